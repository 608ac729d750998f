//! `queqiao-load`: load generator for Queqiao and any WHIP/WHEP server.
//!
//! ```text
//! queqiao-load webrtc --whip http://127.0.0.1:8080/whip/{room} --token TOKEN \
//!     --viewers 200 --server-pid $(pidof queqiao) --json out.json
//! ```
//!
//! Scenarios are subcommands; `chat`, `flv` and `hls` join `webrtc` when those features
//! land in the server. `summarize` turns repeated runs' JSON into a table of medians.

use anyhow::Context;
use clap::{Parser, Subcommand};
use queqiao_tests::load::report::WebrtcReport;
use queqiao_tests::load::summary::{self, SummarizeArgs};
use queqiao_tests::load::webrtc::{self, WebrtcArgs};
use std::io::Write;

#[derive(Debug, Parser)]
#[command(
    name = "queqiao-load",
    version,
    about = "Load generator for WHIP/WHEP servers"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// One WHIP publisher, N WHEP viewers (real WebRTC peers), measured.
    Webrtc(Box<WebrtcArgs>),
    /// Medians of repeated `webrtc --json` reports as a Markdown table (optionally written
    /// between the `<!-- bench:SECTION:start/end -->` markers of a file).
    Summarize(SummarizeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Scenario::Summarize(args) = cli.scenario {
        print!("{}", summary::run(args)?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.scenario {
        Scenario::Webrtc(args) => {
            let json = args.json.clone();
            let markdown = args.markdown.clone();
            let report = runtime.block_on(webrtc::run(*args))?;
            let row = report.markdown_row();
            println!("{}\n{row}", WebrtcReport::markdown_header());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = markdown {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                writeln!(file, "{row}")?;
            }
        }
        Scenario::Summarize(_) => unreachable!("handled above"),
    }
    Ok(())
}
