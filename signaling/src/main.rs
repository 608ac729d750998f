//! The `queqiao` binary: parse configuration, start the server, stop it on SIGTERM/Ctrl-C.

use clap::Parser;
use signaling::config::{Cli, CliCommand, Config};
use signaling::server::Server;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,rtc_dtls=error,webrtc=warn")
            }),
        )
        .init();
    let cli = Cli::parse();
    let mut config = match Config::load(&cli.settings) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("queqiao: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(CliCommand::PrintConfig) = cli.command {
        match toml::to_string_pretty(&config) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("queqiao: {err}"),
        }
        return ExitCode::SUCCESS;
    }
    if config.publish_token.is_none() {
        let token: String = rand::Rng::sample_iter(rand::rng(), rand::distr::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        // Printed once so the operator can publish; never logged again.
        println!(
            "No publish token configured (QUEQIAO_PUBLISH_TOKEN); generated for this run: {token}"
        );
        config.publish_token = Some(token);
    }
    let server = match Server::start(config.clone()).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("queqiao: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Queqiao is running: http://{} (media on udp {})",
        server.http_addr,
        server.sfu.local_addr()
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
