//! Bridge storage (recordings, RTMP push targets) on SQLite and, when
//! `QUEQIAO_TEST_POSTGRES_URL` is set, on PostgreSQL — the same queries on both.

mod common;
use common::{fresh_postgres_database, rand_suffix};
use signaling::store::{NewRoom, Recording, Store, StoreError, Visibility};

async fn stores() -> Vec<(&'static str, Store)> {
    let mut stores = Vec::new();
    let dir = std::env::temp_dir().join(format!("queqiao-store-bridge-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    stores.push((
        "sqlite",
        Store::connect(&Store::sqlite_url(&dir)).await.unwrap(),
    ));
    if let Some(url) = fresh_postgres_database().await {
        stores.push(("postgres", Store::connect(&url).await.unwrap()));
    }
    stores
}

async fn room(store: &Store, id: &str) {
    store
        .create_room(&NewRoom {
            id: id.to_owned(),
            host_id: None,
            title: id.to_owned(),
            cover_url: None,
            tags: Vec::new(),
            city: None,
            scheduled_start: None,
            visibility: Visibility::Public,
        })
        .await
        .unwrap();
}

fn recording(room: &str, id: &str, started_at: i64) -> Recording {
    Recording {
        room_id: room.to_owned(),
        id: id.to_owned(),
        show_id: None,
        started_at,
        ended_at: None,
        duration_ms: 0,
        segments: 0,
        width: 0,
        height: 0,
        video: true,
        audio: true,
        playlist_path: format!("/recordings/{room}/{id}/index.m3u8"),
        error: None,
    }
}

#[tokio::test]
async fn recordings_are_upserted_linked_to_their_show_and_listed_newest_first() {
    for (backend, store) in stores().await {
        room(&store, "r1").await;
        let show = store.start_show("r1").await.unwrap();
        let mut first = recording("r1", &format!("{}-1", show.started_at), show.started_at);
        store.upsert_recording(&first).await.unwrap();
        let listed = store.recordings("r1", 10).await.unwrap();
        assert_eq!(listed.len(), 1, "{backend}");
        assert_eq!(
            listed[0].show_id,
            Some(show.id),
            "{backend}: linked to the show"
        );
        assert_eq!(listed[0].ended_at, None);
        // Finished: the same row is updated.
        first.ended_at = Some(show.started_at + 9_000);
        first.duration_ms = 8_950;
        first.segments = 5;
        first.width = 640;
        first.height = 360;
        store.upsert_recording(&first).await.unwrap();
        let second = recording("r1", "9999999999999-2", show.started_at + 60_000);
        store.upsert_recording(&second).await.unwrap();
        let listed = store.recordings("r1", 10).await.unwrap();
        assert_eq!(listed.len(), 2, "{backend}");
        assert_eq!(listed[0].id, "9999999999999-2", "{backend}: newest first");
        let done = &listed[1];
        assert_eq!(
            (done.duration_ms, done.segments, done.width, done.height),
            (8_950, 5, 640, 360),
            "{backend}"
        );
        assert!(done.video && done.audio);
        // A restart closes recordings left open.
        assert_eq!(
            store.end_dangling_recordings().await.unwrap(),
            1,
            "{backend}"
        );
        let listed = store.recordings("r1", 10).await.unwrap();
        assert!(listed.iter().all(|r| r.ended_at.is_some()), "{backend}");
        assert_eq!(listed[0].error.as_deref(), Some("server_restart"));
        assert!(store.recordings("nobody", 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn rtmp_targets_are_added_listed_reported_and_removed() {
    for (backend, store) in stores().await {
        room(&store, "r2").await;
        room(&store, "r3").await;
        let a = store
            .add_rtmp_target("r2", "rtmp://cdn/live/a", None)
            .await
            .unwrap();
        store
            .add_rtmp_target("r2", "rtmp://cdn/live/b", None)
            .await
            .unwrap();
        store
            .add_rtmp_target("r3", "rtmp://cdn/live/c", None)
            .await
            .unwrap();
        let listed = store.rtmp_targets("r2").await.unwrap();
        assert_eq!(listed.len(), 2, "{backend}");
        assert_eq!(listed[0].url, "rtmp://cdn/live/a");
        assert_eq!(
            store.all_rtmp_targets().await.unwrap().len(),
            3,
            "{backend}"
        );
        store
            .set_rtmp_target_status(a.id, "retrying", Some("the server closed the connection"))
            .await
            .unwrap();
        let listed = store.rtmp_targets("r2").await.unwrap();
        assert_eq!(
            listed[0].last_state.as_deref(),
            Some("retrying"),
            "{backend}"
        );
        assert!(listed[0].updated_at.is_some());
        store.delete_rtmp_target("r2", a.id).await.unwrap();
        assert!(matches!(
            store.delete_rtmp_target("r2", a.id).await,
            Err(StoreError::NotFound)
        ));
        // A target of another room cannot be removed through this one.
        let c = store.rtmp_targets("r3").await.unwrap()[0].id;
        assert!(matches!(
            store.delete_rtmp_target("r2", c).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            store.rtmp_targets("r2").await.unwrap().len(),
            1,
            "{backend}"
        );
    }
}
