//! The `queqiao` binary: parse configuration, start the server, stop it on SIGTERM/Ctrl-C.

use clap::Parser;
use signaling::config::{AdminAction, Cli, CliCommand, Config};
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
    match cli.command {
        Some(CliCommand::PrintConfig) => {
            match toml::to_string_pretty(&config) {
                Ok(text) => println!("{text}"),
                Err(err) => eprintln!("queqiao: {err}"),
            }
            return ExitCode::SUCCESS;
        }
        Some(CliCommand::Admin { action }) => return admin(&config, action).await,
        Some(CliCommand::Serve) | None => {}
    }
    if config.standalone && config.publish_token.is_none() {
        let token: String = rand::Rng::sample_iter(rand::rng(), rand::distr::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        // Printed once so the operator can publish; never logged again.
        println!("Standalone mode without QUEQIAO_PUBLISH_TOKEN; generated for this run: {token}");
        config.publish_token = Some(token);
    }
    if !config.standalone && config.publish_token.is_some() {
        tracing::warn!(
            "a publish token is configured but standalone mode is off: hosts publish with their account token"
        );
    }
    if cli.settings.seed_demo
        && let Err(err) = seed_demo(&config).await
    {
        eprintln!("queqiao: could not seed demo accounts: {err}");
        return ExitCode::FAILURE;
    }
    let shutdown = shutdown_signal();
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
    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// `queqiao admin …`: account administration straight on the database.
async fn admin(config: &Config, action: AdminAction) -> ExitCode {
    use signaling::store::{NewUser, Role, Store};
    if let Err(err) = signaling::server::prepare_data_dir(&config.data_dir) {
        eprintln!(
            "queqiao: cannot create {}: {err}",
            config.data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let store = match Store::connect(&config.database_url()).await {
        Ok(store) => store,
        Err(err) => {
            eprintln!("queqiao: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match action {
        AdminAction::Create { username, nickname } => {
            let password = match std::env::var("QUEQIAO_ADMIN_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    eprintln!("Password for {username} (from standard input):");
                    let mut line = String::new();
                    if std::io::stdin().read_line(&mut line).is_err() {
                        eprintln!("queqiao: could not read the password");
                        return ExitCode::FAILURE;
                    }
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let checked = signaling::validate::username(&username)
                .and_then(|u| signaling::validate::password(&password).map(|()| u));
            let username = match checked {
                Ok(username) => username,
                Err(err) => {
                    eprintln!("queqiao: {err}");
                    return ExitCode::from(2);
                }
            };
            let hash = match signaling::auth::hash_password(password).await {
                Ok(hash) => hash,
                Err(err) => {
                    eprintln!("queqiao: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let new = NewUser {
                nickname: nickname.unwrap_or_else(|| username.clone()),
                username: Some(username),
                password_hash: hash,
                role: Some(Role::Admin),
                ..Default::default()
            };
            signaling::server::secure_database_files(&config.data_dir);
            store
                .create_user(&new)
                .await
                .map(|user| println!("admin created: id {} ({})", user.id, user.nickname))
        }
        AdminAction::GrantHost { login } => match store.user_by_login(&login).await {
            Ok(user) => store
                .set_role(user.id, Role::Host)
                .await
                .map(|user| println!("{} is now a host", user.nickname)),
            Err(err) => Err(err),
        },
    };
    store.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("queqiao: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `--seed-demo`: on an empty database, an admin, a host with a room, and their passwords.
async fn seed_demo(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    use signaling::store::{NewRoom, NewUser, Role, Store, Visibility};
    signaling::server::prepare_data_dir(&config.data_dir)?;
    let store = Store::connect(&config.database_url()).await?;
    if store.list_users(1, 0).await?.1 > 0 {
        store.close().await;
        return Ok(());
    }
    let password = || -> String {
        rand::Rng::sample_iter(rand::rng(), rand::distr::Alphanumeric)
            .take(12)
            .map(char::from)
            .collect()
    };
    let (admin_password, host_password) = (password(), password());
    store
        .create_user(&NewUser {
            username: Some("admin".into()),
            password_hash: signaling::auth::hash_password(admin_password.clone()).await?,
            role: Some(Role::Admin),
            nickname: "管理员".into(),
            ..Default::default()
        })
        .await?;
    let host = store
        .create_user(&NewUser {
            username: Some("hongniang".into()),
            password_hash: signaling::auth::hash_password(host_password.clone()).await?,
            role: Some(Role::Host),
            nickname: "红娘小美".into(),
            city: Some("上海".into()),
            bio: Some("周末相亲局主持人".into()),
            tags: vec!["红娘".into()],
            ..Default::default()
        })
        .await?;
    store
        .create_room(&NewRoom {
            id: "demo".into(),
            host_id: Some(host.id),
            title: "周末相亲局 · Weekend matchmaking".into(),
            cover_url: None,
            tags: vec!["交友".into(), "相亲".into()],
            city: Some("上海".into()),
            scheduled_start: None,
            visibility: Visibility::Public,
        })
        .await?;
    store.close().await;
    println!(
        "Demo accounts (shown once): admin / {admin_password}   host hongniang / {host_password} (room \"demo\")"
    );
    Ok(())
}

/// Installs the SIGTERM and SIGINT (Ctrl-C) handlers now, so a signal that arrives right
/// after the "running" line is not lost to the default action, and returns the wait for
/// either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
