//! `queqiao-load summarize`: turns the JSON reports of repeated runs into a Markdown table
//! of medians (one row per scenario label), optionally written between marker comments of
//! a file such as `BENCHMARKS.md`:
//!
//! ```text
//! <!-- bench:webrtc:start -->
//! …generated…
//! <!-- bench:webrtc:end -->
//! ```

use crate::load::report::WebrtcReport;
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;

/// Options of `queqiao-load summarize`.
#[derive(Debug, Clone, Args)]
pub struct SummarizeArgs {
    /// JSON reports written by `webrtc --json`.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Replace the text between `<!-- bench:SECTION:start -->` and `…:end -->` in this file.
    #[arg(long)]
    pub update: Option<PathBuf>,
    /// Section name of the markers.
    #[arg(long, default_value = "webrtc")]
    pub section: String,
    /// Lines to print above the table (machine, command…), Markdown.
    #[arg(long)]
    pub note: Vec<String>,
}

/// Median of the values present (`None` if none is).
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut values: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// The Markdown table of medians, one row per label in first-seen order.
pub fn table(reports: &[WebrtcReport]) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for report in reports {
        if !labels.contains(&report.label.as_str()) {
            labels.push(&report.label);
        }
    }
    let mut out = String::new();
    out.push_str(
        "| scenario | runs | viewers connected | fwd pkt/s | loss | server µs/pkt | server CPU (kernel share) | delay p50 / p99 ms | TTFF p50 / p95 ms | RSS/viewer KiB | PLIs at publisher | gen µs/pkt | gen CPU | NACKs/viewer | keyframes forced |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for label in labels {
        let runs: Vec<&WebrtcReport> = reports.iter().filter(|r| r.label == label).collect();
        let m = |f: &dyn Fn(&WebrtcReport) -> Option<f64>| median(runs.iter().map(|r| f(r)));
        let viewers = runs.first().map_or(0, |r| r.viewers);
        out.push_str(&format!(
            "| {label} | {} | {}/{viewers} | {} | {} | {} | {}{} | {} / {} | {} / {} | {} | {} | {} | {} | {} | {} |\n",
            runs.len(),
            cell(m(&|r| Some(r.viewers_connected as f64)), 0),
            cell(m(&|r| Some(r.forwarded_per_second)), 0),
            m(&|r| Some(r.loss * 100.0)).map_or_else(|| "–".into(), |v| format!("{v:.3}%")),
            cell(m(&|r| r.server.cpu_us_per_packet), 2),
            m(&|r| r.server.cpu_percent).map_or_else(|| "–".into(), |v| format!("{v:.0}%")),
            m(&|r| r.server.cpu_system_share)
                .map_or_else(String::new, |v| format!(" ({:.0}%)", v * 100.0)),
            cell(m(&|r| r.delay_ms.p50), 2),
            cell(m(&|r| r.delay_ms.p99), 2),
            cell(m(&|r| r.ttff_ms.p50), 0),
            cell(m(&|r| r.ttff_ms.p95), 0),
            cell(m(&|r| r.server.rss_per_viewer_kib), 0),
            cell(m(&|r| Some(r.publisher.plis as f64)), 0),
            cell(m(&|r| r.generator.cpu_us_per_packet), 2),
            m(&|r| r.generator.cpu_percent).map_or_else(|| "–".into(), |v| format!("{v:.0}%")),
            cell(m(&|r| r.viewer_feedback.nacks_per_viewer), 1),
            cell(m(&|r| Some(r.publisher.keyframes_forced as f64)), 0),
        ));
    }
    out
}

/// Least-squares slope of `y` over `x` (`None` with fewer than two distinct `x`).
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The server's RSS growth per extra viewer across scenarios: the slope of the median
/// growth (KiB) over the connected viewer count. Unlike growth ÷ viewers it is free of
/// what one run costs regardless of its audience (the room's packet ring filling up,
/// allocator arenas of the signaling threads), which dominates small runs.
pub fn marginal_rss_per_viewer(reports: &[WebrtcReport]) -> Option<f64> {
    let mut labels: Vec<&str> = Vec::new();
    for report in reports {
        if !labels.contains(&report.label.as_str()) {
            labels.push(&report.label);
        }
    }
    let points: Vec<(f64, f64)> = labels
        .iter()
        .filter_map(|label| {
            let runs: Vec<&WebrtcReport> = reports.iter().filter(|r| r.label == *label).collect();
            let viewers = median(runs.iter().map(|r| Some(r.viewers_connected as f64)))?;
            let growth = median(runs.iter().map(|r| {
                Some(
                    r.server
                        .rss_after_kib?
                        .saturating_sub(r.server.rss_before_kib?) as f64,
                )
            }))?;
            Some((viewers, growth))
        })
        .collect();
    slope(&points)
}

/// Replaces the text between the section's markers (exclusive) with `body`.
pub fn replace_section(text: &str, section: &str, body: &str) -> anyhow::Result<String> {
    let start = format!("<!-- bench:{section}:start -->");
    let end = format!("<!-- bench:{section}:end -->");
    let Some(from) = text.find(&start) else {
        bail!("marker {start} not found");
    };
    let after_start = from + start.len();
    let Some(to) = text[after_start..].find(&end).map(|i| after_start + i) else {
        bail!("marker {end} not found after {start}");
    };
    Ok(format!("{}\n{}{}", &text[..after_start], body, &text[to..]))
}

/// Runs the subcommand: prints the table, and updates the file if asked.
pub fn run(args: SummarizeArgs) -> anyhow::Result<String> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: WebrtcReport =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        reports.push(report);
    }
    let mut body = String::new();
    for note in &args.note {
        body.push_str(note);
        body.push('\n');
    }
    if !args.note.is_empty() {
        body.push('\n');
    }
    body.push_str(&table(&reports));
    if let Some(marginal) = marginal_rss_per_viewer(&reports) {
        body.push_str(&format!(
            "\nServer RSS per additional viewer (least-squares slope of the median RSS growth over \
             the viewer count of the scenarios above): **{marginal:.0} KiB**.\n"
        ));
    }
    if let Some(path) = &args.update {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let updated = replace_section(&text, &args.section, &body)?;
        std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median([Some(4.0), None, Some(1.0), Some(2.0), Some(3.0)]),
            Some(2.5)
        );
        assert_eq!(median([None, Some(f64::NAN)]), None);
    }

    #[test]
    fn slopes() {
        assert_eq!(
            slope(&[(0.0, 10.0), (100.0, 210.0), (200.0, 410.0)]),
            Some(2.0)
        );
        assert_eq!(slope(&[(5.0, 1.0), (5.0, 2.0)]), None);
        assert_eq!(slope(&[(5.0, 1.0)]), None);
    }

    #[test]
    fn sections_are_replaced_between_markers() {
        let text = "# B\n<!-- bench:webrtc:start -->\nold\n<!-- bench:webrtc:end -->\ntail\n";
        let updated = replace_section(text, "webrtc", "new\n").unwrap();
        assert_eq!(
            updated,
            "# B\n<!-- bench:webrtc:start -->\nnew\n<!-- bench:webrtc:end -->\ntail\n"
        );
        assert!(replace_section(text, "chat", "x").is_err());
    }
}
