//! `GET /metrics`: Prometheus text exposition of the media plane's counters and gauges.

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    for (name, value) in state.sfu.stats().pairs() {
        let _ = writeln!(
            out,
            "# TYPE queqiao_sfu_{name}_total counter\nqueqiao_sfu_{name}_total {value}"
        );
    }
    write_unknown_sources(&state.sfu.stats().unknown_sources(), &mut out);
    let interaction = state.interaction.stats();
    let counters = [
        ("events", interaction.events.load(Ordering::Relaxed)),
        (
            "chat_messages",
            interaction.chat_messages.load(Ordering::Relaxed),
        ),
        (
            "chat_not_stored",
            interaction.chat_not_stored.load(Ordering::Relaxed),
        ),
        ("likes", interaction.likes.load(Ordering::Relaxed)),
        ("gifts", interaction.gifts.load(Ordering::Relaxed)),
        ("client_errors", interaction.errors.load(Ordering::Relaxed)),
        (
            "slow_members_dropped",
            interaction.slow_members_dropped.load(Ordering::Relaxed),
        ),
        (
            "data_channel_drops",
            interaction.data_channel_drops.load(Ordering::Relaxed),
        ),
    ];
    for (name, value) in counters {
        let _ = writeln!(
            out,
            "# TYPE queqiao_room_{name}_total counter\nqueqiao_room_{name}_total {value}"
        );
    }
    let _ = writeln!(
        out,
        "# TYPE queqiao_room_members gauge\nqueqiao_room_members {}",
        interaction.members.load(Ordering::Relaxed)
    );
    crate::bridge_metrics::write_metrics(&state, &mut out);
    if let Some(ingest) = &state.rtmp_ingest {
        for (name, value) in ingest.stats.pairs() {
            let _ = writeln!(
                out,
                "# TYPE queqiao_rtmp_ingest_{name}_total counter\nqueqiao_rtmp_ingest_{name}_total {value}"
            );
        }
    }
    if let Ok(snapshot) = state.sfu.snapshot().await {
        let live = snapshot.rooms.iter().filter(|r| r.live).count();
        let viewers: usize = snapshot.rooms.iter().map(|r| r.viewers).sum();
        let _ = writeln!(
            out,
            "# TYPE queqiao_sfu_rooms gauge\nqueqiao_sfu_rooms {}",
            snapshot.rooms.len()
        );
        let _ = writeln!(
            out,
            "# TYPE queqiao_sfu_live_rooms gauge\nqueqiao_sfu_live_rooms {live}"
        );
        let _ = writeln!(
            out,
            "# TYPE queqiao_sfu_peers gauge\nqueqiao_sfu_peers {}",
            snapshot.peers
        );
        let _ = writeln!(
            out,
            "# TYPE queqiao_sfu_viewers gauge\nqueqiao_sfu_viewers {viewers}"
        );
        type ShardGauge = fn(&sfu::ShardSnapshot) -> usize;
        let per_shard: [(&str, ShardGauge); 2] = [
            ("queqiao_sfu_shard_peers", |shard| shard.peers),
            ("queqiao_sfu_shard_viewers", |shard| shard.viewers),
        ];
        for (name, value) in per_shard {
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (index, shard) in snapshot.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{index}\"}} {}", value(shard));
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Most sources of unknown UDP traffic listed by address.
const UNKNOWN_SOURCES_LISTED: usize = 10;

/// The heaviest sources of unknown UDP traffic (a bounded table, see
/// `sfu::unknown_sources`), how many are tracked, and how often a new source replaced a
/// lighter one.
fn write_unknown_sources(sources: &sfu::unknown_sources::UnknownSources, out: &mut String) {
    let _ = writeln!(
        out,
        "# TYPE queqiao_sfu_unknown_sources_tracked gauge\nqueqiao_sfu_unknown_sources_tracked {}",
        sources.len()
    );
    let _ = writeln!(
        out,
        "# TYPE queqiao_sfu_unknown_source_evictions_total counter\nqueqiao_sfu_unknown_source_evictions_total {}",
        sources.evictions()
    );
    let _ = writeln!(out, "# TYPE queqiao_sfu_unknown_datagrams_by_source gauge");
    for (source, datagrams) in sources.heaviest().into_iter().take(UNKNOWN_SOURCES_LISTED) {
        let _ = writeln!(
            out,
            "queqiao_sfu_unknown_datagrams_by_source{{source=\"{source}\"}} {datagrams}"
        );
    }
}
