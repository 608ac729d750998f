//! Glue between the bridge service (HTTP-FLV, HLS, LL-HLS, RTMP push, recordings; the
//! `bridge` crate knows no database) and storage: the bridge's configuration from ours,
//! a task that persists what the bridge reports (recordings, RTMP target status), and
//! the RTMP targets each room should push to (configured + set by hosts through the API).

use crate::config::Config;
use crate::store::{Recording, Store};
use bridge::{BridgeConfig, BridgeEvent, BridgeHandle, RecordingInfo, RtmpState, RtmpTarget};
use sfu::RoomId;
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The bridge's configuration from the server's.
pub fn bridge_config(config: &Config) -> BridgeConfig {
    BridgeConfig {
        data_dir: config.data_dir.clone(),
        record: config.record,
        rtmp_templates: config
            .rtmp_push
            .iter()
            .filter_map(|entry| entry.split_once('='))
            .filter(|(room, _)| room.trim() == "*")
            .map(|(_, url)| url.trim().to_owned())
            .collect(),
        // Checked by `Server::start`; an invalid list leaves only public targets open.
        rtmp_policy: bridge::target_policy::TargetPolicy::new(&config.restream_allow)
            .unwrap_or_default(),
        recordings_min_free_bytes: config.recordings_min_free_bytes,
        ..BridgeConfig::default()
    }
}

/// Targets configured for one room (`ROOM=URL` entries of `rtmp_push`; `*` entries
/// apply to every room and are handled by the bridge itself).
pub fn configured_targets(config: &Config, room: &str) -> Vec<RtmpTarget> {
    config
        .rtmp_push
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .enumerate()
        .filter(|(_, (r, _))| r.trim() == room)
        .map(|(i, (_, url))| RtmpTarget {
            id: format!("config-{i}"),
            url: url.trim().to_owned(),
        })
        .collect()
}

/// Tells the bridge a room's full target list (configured + stored).
pub async fn sync_room_targets(
    store: &Store,
    bridge: &BridgeHandle,
    config: &Config,
    room: &str,
) -> Result<(), crate::store::StoreError> {
    let Some(id) = RoomId::parse(room) else {
        return Ok(());
    };
    let mut targets = configured_targets(config, room);
    targets.extend(
        store
            .rtmp_targets(room)
            .await?
            .into_iter()
            .map(|row| RtmpTarget {
                id: row.id.to_string(),
                url: row.url,
            }),
    );
    bridge.set_rtmp_targets(id, targets);
    Ok(())
}

/// The persistence task; [`BridgeSync::stop`] drains what the bridge already reported.
pub struct BridgeSync {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl BridgeSync {
    /// Loads every room's targets into the bridge and starts persisting its events.
    pub async fn start(
        store: Store,
        bridge: &BridgeHandle,
        config: &Config,
        mut events: mpsc::Receiver<BridgeEvent>,
    ) -> Result<BridgeSync, crate::store::StoreError> {
        let dangling = store
            .recover_recordings(&config.data_dir.join("recordings"))
            .await?;
        if dangling > 0 {
            tracing::info!(dangling, "closed recordings left open by the previous run");
        }
        let mut rooms: BTreeMap<String, Vec<RtmpTarget>> = BTreeMap::new();
        for entry in config.rtmp_push.iter().filter_map(|e| e.split_once('=')) {
            if entry.0.trim() != "*" {
                rooms.entry(entry.0.trim().to_owned()).or_default();
            }
        }
        for row in store.all_rtmp_targets().await? {
            rooms.entry(row.room_id.clone()).or_default();
        }
        for room in rooms.keys() {
            sync_room_targets(&store, bridge, config, room).await?;
        }
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) => persist(&store, event).await,
                        None => break,
                    },
                    _ = &mut stopped => {
                        events.close();
                        while let Some(event) = events.recv().await {
                            persist(&store, event).await;
                        }
                        break;
                    }
                }
            }
        });
        Ok(BridgeSync {
            stop: Some(stop),
            task,
        })
    }

    /// Persists the events already reported, then stops.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn recording_row(info: &RecordingInfo) -> Recording {
    Recording {
        room_id: info.room.clone(),
        id: info.id.clone(),
        show_id: None,
        started_at: info.started_at,
        ended_at: info.ended_at,
        duration_ms: (info.duration_secs * 1000.0).round() as i64,
        segments: info.segments as i64,
        width: i64::from(info.width),
        height: i64::from(info.height),
        video: info.video,
        audio: info.audio,
        playlist_path: info.playlist_path.clone(),
        error: info.error.clone(),
    }
}

async fn persist(store: &Store, event: BridgeEvent) {
    match event {
        BridgeEvent::RecordingStarted(info) | BridgeEvent::RecordingFinished(info) => {
            if let Err(err) = store.upsert_recording(&recording_row(&info)).await {
                tracing::warn!(room = %info.room, id = %info.id, %err, "could not store the recording");
            }
        }
        BridgeEvent::RtmpStatus { room, status } => {
            let Ok(id) = status.target_id.parse::<i64>() else {
                return; // configured targets are not stored
            };
            let state = match status.state {
                RtmpState::Idle => "idle",
                RtmpState::Connecting => "connecting",
                RtmpState::Publishing => "publishing",
                RtmpState::Retrying => "retrying",
                RtmpState::Stopped => "stopped",
            };
            if let Err(err) = store
                .set_rtmp_target_status(id, state, status.last_error.as_deref())
                .await
            {
                tracing::warn!(%room, target = id, %err, "could not store the RTMP target status");
            }
        }
    }
}
