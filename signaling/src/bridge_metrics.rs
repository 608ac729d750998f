//! The bridge's counters, gauges and latency histograms as Prometheus text (for
//! `/metrics`).

use crate::state::AppState;

/// Appends the bridge's counters, gauges and latency histograms (Prometheus text).
pub fn write_metrics(state: &AppState, out: &mut String) {
    use std::fmt::Write;
    let stats = state.bridge.stats();
    for (name, value, gauge) in stats.pairs() {
        let (kind, suffix) = if gauge {
            ("gauge", "")
        } else {
            ("counter", "_total")
        };
        let _ = writeln!(
            out,
            "# TYPE queqiao_bridge_{name}{suffix} {kind}\nqueqiao_bridge_{name}{suffix} {value}"
        );
    }
    for (name, histogram) in stats.histograms() {
        let _ = writeln!(out, "# TYPE queqiao_bridge_{name} histogram");
        let mut cumulative = 0;
        for (i, count) in histogram.buckets().iter().enumerate() {
            cumulative += count;
            let le = bridge::service::HISTOGRAM_BOUNDS_MS.get(i).map_or_else(
                || "+Inf".to_owned(),
                |ms| format!("{}", *ms as f64 / 1000.0),
            );
            let _ = writeln!(
                out,
                "queqiao_bridge_{name}_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(out, "queqiao_bridge_{name}_sum {}", histogram.sum_secs());
        let _ = writeln!(out, "queqiao_bridge_{name}_count {}", histogram.count());
    }
}
