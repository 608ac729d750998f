//! `queqiao-load`: load generator for Queqiao and any WHIP/WHEP server.
//!
//! ```text
//! queqiao-load webrtc --whip http://127.0.0.1:8080/whip/{room} --token TOKEN \
//!     --viewers 200 --server-pid $(pidof queqiao) --json out.json
//! ```
//!
//! ```text
//! queqiao-load chat --base http://127.0.0.1:8080 --room demo --members 2000 \
//!     --senders 200 --messages-per-sec 200 --server-pid $(pidof queqiao)
//! ```
//!
//! ```text
//! queqiao-load flv --whip http://127.0.0.1:8080/whip/{room} --token TOKEN \
//!     --players 100 --server-pid $(pidof queqiao)
//! queqiao-load hls --variant llhls --whip http://127.0.0.1:8080/whip/{room} --token TOKEN \
//!     --players 20 --server-pid $(pidof queqiao)
//! ```
//!
//! Scenarios are subcommands: `webrtc` (WHIP publisher, WHEP viewers), `chat`
//! (WebSocket members, chat and like storms), `flv` and `hls` (WHIP publisher, HTTP-FLV
//! or (LL-)HLS players measuring the delay to the live edge). `summarize` turns repeated `webrtc` runs'
//! JSON into a table of medians.

use anyhow::Context;
use clap::{Parser, Subcommand};
use queqiao_tests::chatload::{self, ChatLoadOptions};
use queqiao_tests::load::http_players::{self, FlvArgs, HlsArgs, HttpReport};
use queqiao_tests::load::report::{ReportArgs, WebrtcReport};
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
    /// N WebSocket members in one room, chat messages and like taps from logged-in
    /// senders; send → receive delay at every member and the server's CPU.
    Chat(ChatArgs),
    /// One WHIP publisher, N HTTP-FLV players measuring the delay to the live edge.
    Flv(Box<FlvArgs>),
    /// One WHIP publisher, N LL-HLS (default) or HLS players measuring the delay to the
    /// live edge.
    Hls(Box<HlsArgs>),
    /// Medians of repeated `webrtc --json` reports as a Markdown table (optionally written
    /// between the `<!-- bench:SECTION:start/end -->` markers of a file).
    Summarize(SummarizeArgs),
}

/// The `chat` scenario's options.
#[derive(Debug, clap::Args)]
struct ChatArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// An existing public room (`queqiao --seed-demo` creates `demo`).
    #[arg(long, default_value = "demo")]
    room: String,
    /// Anonymous receiving members.
    #[arg(long, default_value_t = 2000)]
    members: usize,
    /// Members that parse and time every event, spread over the join order (0: all); the
    /// rest drain their sockets raw every 100 ms, so the generator's core measures the
    /// server rather than its own parsing.
    #[arg(long, default_value_t = 200)]
    measured_members: usize,
    /// Logged-in senders (registered by the tool; each is rate-limited by the server, so
    /// spread the rates over enough of them).
    #[arg(long, default_value_t = 200)]
    senders: usize,
    /// Chat messages per second over all senders.
    #[arg(long, default_value_t = 200.0)]
    messages_per_sec: f64,
    /// Like taps per second over all senders (10 taps per `like` message).
    #[arg(long, default_value_t = 0.0)]
    likes_per_sec: f64,
    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// The server's process id, for its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Where the report goes (`--label` defaults to `chat`).
    #[command(flatten)]
    output: ReportArgs,
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
            let output = args.output.clone();
            let report = runtime.block_on(webrtc::run(*args))?;
            let header = WebrtcReport::markdown_header();
            write_outputs(&header, &report.markdown_row(), &report, &output)?;
        }
        Scenario::Chat(args) => {
            let report = runtime.block_on(chatload::run(ChatLoadOptions {
                base: args.base.trim_end_matches('/').to_owned(),
                room: args.room,
                members: args.members,
                measured_members: args.measured_members,
                senders: args.senders,
                messages_per_sec: args.messages_per_sec,
                likes_per_sec: args.likes_per_sec,
                duration: std::time::Duration::from_secs_f64(args.duration.max(1.0)),
                server_pid: args.server_pid,
                progress: !args.output.quiet,
            }))?;
            let label = args.output.label.as_deref().unwrap_or("chat");
            let header = chatload::ChatLoadReport::markdown_header();
            write_outputs(header, &report.markdown_row(label), &report, &args.output)?;
        }
        Scenario::Flv(args) => {
            let output = args.common.output.clone();
            let report = runtime.block_on(http_players::run_flv(*args))?;
            let header = HttpReport::markdown_header();
            write_outputs(&header, &report.markdown_row(), &report, &output)?;
        }
        Scenario::Hls(args) => {
            let output = args.common.output.clone();
            let report = runtime.block_on(http_players::run_hls(*args))?;
            let header = HttpReport::markdown_header();
            write_outputs(&header, &report.markdown_row(), &report, &output)?;
        }
        Scenario::Summarize(_) => unreachable!("handled above"),
    }
    Ok(())
}

/// Prints the table header and the report's row; writes the JSON and appends the row where
/// asked.
fn write_outputs(
    header: &str,
    row: &str,
    report: &impl serde::Serialize,
    output: &ReportArgs,
) -> anyhow::Result<()> {
    println!("{header}\n{row}");
    if let Some(path) = &output.json {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &output.markdown {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{row}")?;
    }
    Ok(())
}
