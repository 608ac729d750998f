//! Repository tests: every test runs on SQLite and, when `QUEQIAO_TEST_POSTGRES_URL` is set
//! (the test command starts a throwaway cluster), on PostgreSQL — the same queries on both.

mod common;
use common::{fresh_postgres_database, rand_suffix};
use signaling::store::{
    NewRoom, NewUser, ProfileUpdate, Role, RoomFilter, RoomUpdate, Store, StoreError, Visibility,
};

/// A fresh, empty database per backend: a temp SQLite file, and a new PostgreSQL database.
async fn stores() -> Vec<(&'static str, Store, String)> {
    let mut stores = Vec::new();
    let dir = std::env::temp_dir().join(format!("queqiao-store-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = Store::sqlite_url(&dir);
    stores.push(("sqlite", Store::connect(&url).await.unwrap(), url));
    if let Some(url) = fresh_postgres_database().await {
        stores.push(("postgres", Store::connect(&url).await.unwrap(), url));
    }
    stores
}

fn user(name: &str) -> NewUser {
    NewUser {
        username: Some(name.to_owned()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        nickname: format!("{name} 昵称"),
        tags: vec!["旅行".into(), "music".into()],
        ..Default::default()
    }
}

fn room(id: &str, host: i64) -> NewRoom {
    NewRoom {
        id: id.to_owned(),
        host_id: Some(host),
        title: format!("{id} title"),
        cover_url: None,
        tags: vec!["交友".into()],
        city: Some("上海".into()),
        scheduled_start: None,
        visibility: Visibility::Public,
    }
}

#[tokio::test]
async fn users_are_unique_findable_and_stored_verbatim() {
    for (backend, store, _) in stores().await {
        let alice = store.create_user(&user("Alice")).await.unwrap();
        assert_eq!(alice.role, Role::Viewer, "{backend}");
        assert_eq!(alice.tags, vec!["旅行", "music"]);
        // Usernames are unique case-insensitively; phones too.
        assert!(
            matches!(
                store.create_user(&user("alice")).await,
                Err(StoreError::Conflict(_))
            ),
            "{backend}"
        );
        let phone = NewUser {
            username: None,
            phone: Some("13800138000".into()),
            ..user("x")
        };
        let by_phone = store.create_user(&phone).await.unwrap();
        assert!(matches!(
            store.create_user(&phone).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.user_by_login("ALICE").await.unwrap().id, alice.id);
        assert_eq!(
            store.user_by_login("13800138000").await.unwrap().id,
            by_phone.id
        );
        assert!(matches!(
            store.user_by_login("nobody").await,
            Err(StoreError::NotFound)
        ));

        // Injection-looking text is data, returned exactly.
        let nasty = "Robert'); DROP TABLE users;-- <script>alert(1)</script> 💕";
        let updated = store
            .update_profile(
                alice.id,
                &ProfileUpdate {
                    bio: Some(Some(nasty.into())),
                    city: Some(None),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.bio.as_deref(), Some(nasty));
        assert_eq!(
            store.user(alice.id).await.unwrap().bio.as_deref(),
            Some(nasty),
            "{backend}"
        );
        assert_eq!(
            store.list_users(10, 0).await.unwrap().1,
            2,
            "the users table survived"
        );

        let host = store.set_role(alice.id, Role::Host).await.unwrap();
        assert_eq!(host.role, Role::Host);
        let banned = store.set_ban(alice.id, Some("spam")).await.unwrap();
        assert!(banned.is_banned());
        assert_eq!(
            banned.token_version,
            alice.token_version + 1,
            "a ban revokes tokens"
        );
        assert!(!store.set_ban(alice.id, None).await.unwrap().is_banned());
        assert!(matches!(
            store.set_role(9999, Role::Admin).await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn rooms_list_live_first_with_filters_and_paging() {
    for (backend, store, _) in stores().await {
        let host = store.create_user(&user("host")).await.unwrap();
        let other = store.create_user(&user("other")).await.unwrap();
        for i in 0..5 {
            store
                .create_room(&room(&format!("r{i}"), host.id))
                .await
                .unwrap();
        }
        assert!(matches!(
            store.create_room(&room("r0", host.id)).await,
            Err(StoreError::Conflict(_))
        ));
        let mut beijing = room("bj", other.id);
        beijing.city = Some("北京".into());
        beijing.tags = vec!["Music".into()];
        store.create_room(&beijing).await.unwrap();
        let mut secret = room("secret", other.id);
        secret.visibility = Visibility::Private;
        store.create_room(&secret).await.unwrap();

        store.set_room_live("r3", true, 7).await.unwrap();
        store.set_room_live("r1", true, 20).await.unwrap();
        let page = store
            .list_rooms(&RoomFilter::default(), 3, 0)
            .await
            .unwrap();
        assert_eq!(page.total, 6, "{backend}: private rooms are not listed");
        let ids: Vec<&str> = page.rooms.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            &ids[..2],
            ["r1", "r3"],
            "{backend}: live first, most viewers first"
        );
        assert_eq!(page.rooms[0].host_nickname.as_deref(), Some("host 昵称"));
        let second = store
            .list_rooms(&RoomFilter::default(), 3, 3)
            .await
            .unwrap();
        assert_eq!(second.rooms.len(), 3);
        assert!(
            second.rooms.iter().all(|r| !ids.contains(&r.id.as_str())),
            "pages do not overlap"
        );

        let live = store
            .list_rooms(
                &RoomFilter {
                    live_only: true,
                    ..Default::default()
                },
                10,
                0,
            )
            .await
            .unwrap();
        assert_eq!(live.total, 2);
        let city = store
            .list_rooms(
                &RoomFilter {
                    city: Some("北京".into()),
                    ..Default::default()
                },
                10,
                0,
            )
            .await
            .unwrap();
        assert_eq!(
            city.rooms.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            ["bj"]
        );
        let tag = store
            .list_rooms(
                &RoomFilter {
                    tag: Some("music".into()),
                    ..Default::default()
                },
                10,
                0,
            )
            .await
            .unwrap();
        assert_eq!(tag.total, 1, "{backend}: tags match case-insensitively");
        let mine = store
            .list_rooms(
                &RoomFilter {
                    host_id: Some(other.id),
                    include_private: true,
                    ..Default::default()
                },
                10,
                0,
            )
            .await
            .unwrap();
        assert_eq!(mine.total, 2);

        let changed = store
            .update_room(
                "bj",
                &RoomUpdate {
                    title: Some("新标题".into()),
                    tags: Some(vec!["夜聊".into()]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(changed.title, "新标题");
        assert_eq!(
            store
                .list_rooms(
                    &RoomFilter {
                        tag: Some("music".into()),
                        ..Default::default()
                    },
                    10,
                    0
                )
                .await
                .unwrap()
                .total,
            0
        );
        assert_eq!(
            store
                .list_rooms(
                    &RoomFilter {
                        tag: Some("夜聊".into()),
                        ..Default::default()
                    },
                    10,
                    0
                )
                .await
                .unwrap()
                .total,
            1
        );

        store.close_room("r0").await.unwrap();
        assert!(store.room("r0").await.unwrap().closed);
        assert_eq!(
            store
                .list_rooms(&RoomFilter::default(), 10, 0)
                .await
                .unwrap()
                .total,
            5
        );

        assert!(!store.has_access("secret", host.id).await.unwrap());
        store
            .grant_access("secret", host.id, other.id)
            .await
            .unwrap();
        store
            .grant_access("secret", host.id, other.id)
            .await
            .unwrap();
        assert!(store.has_access("secret", host.id).await.unwrap());
        assert_eq!(store.grants("secret").await.unwrap(), vec![host.id]);
        store.revoke_access("secret", host.id).await.unwrap();
        assert!(!store.has_access("secret", host.id).await.unwrap());
    }
}

#[tokio::test]
async fn shows_record_history_and_survive_a_restart() {
    for (backend, store, url) in stores().await {
        let host = store.create_user(&user("h")).await.unwrap();
        store.create_room(&room("live", host.id)).await.unwrap();
        let first = store.start_show("live").await.unwrap();
        assert!(store.room("live").await.unwrap().live);
        store.raise_peak(first.id, 12).await.unwrap();
        store.raise_peak(first.id, 5).await.unwrap();
        store.end_show(first.id, 3, "publisher_left").await.unwrap();
        assert!(!store.room("live").await.unwrap().live);
        let second = store.start_show("live").await.unwrap();
        let key = store.secret("jwt", || "first".into()).await.unwrap();
        assert_eq!(store.secret("jwt", || "second".into()).await.unwrap(), key);
        store.close().await;

        // A restart: the same database, a new process.
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(store.end_dangling_shows().await.unwrap(), 1, "{backend}");
        let shows = store.shows("live", 10).await.unwrap();
        assert_eq!(shows.len(), 2);
        assert_eq!(shows[0].id, second.id);
        assert_eq!(shows[0].end_reason.as_deref(), Some("server_restart"));
        assert_eq!(shows[1].peak_viewers, 12);
        assert_eq!(shows[1].end_reason.as_deref(), Some("publisher_left"));
        assert!(shows[1].ended_at.unwrap() >= shows[1].started_at);
        assert_eq!(store.user_by_login("h").await.unwrap().id, host.id);
        assert_eq!(
            store.secret("jwt", || "third".into()).await.unwrap(),
            "first"
        );
        assert!(!store.room("live").await.unwrap().live);
    }
}

/// Retries of one gift that race each other get the gift's answer, never "insufficient
/// coins": on PostgreSQL the loser's debit waits for the winner's row lock and then sees
/// the balance the winner spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_of_one_gift_are_charged_once_and_all_answered() {
    use signaling::store::{GiftOutcome, GiftRequest};
    for (backend, store, _) in stores().await {
        let host = store.create_user(&user("gifthost")).await.unwrap();
        store.create_room(&room("gifts", host.id)).await.unwrap();
        let mut senders = Vec::new();
        for i in 0..30 {
            let sender = store.create_user(&user(&format!("fan{i}"))).await.unwrap();
            // Exactly one rose's worth.
            store
                .top_up(sender.id, 1, &format!("t{i}"), None)
                .await
                .unwrap();
            senders.push(sender.id);
        }
        let attempts = senders.iter().flat_map(|&sender| {
            (0..3).map(move |_| GiftRequest {
                sender_id: sender,
                room_id: "gifts".into(),
                gift_id: "rose".into(),
                quantity: 1,
                idempotency_key: format!("once-{sender}"),
            })
        });
        let results = futures::future::join_all(attempts.map(|request| {
            let store = store.clone();
            tokio::spawn(async move { (request.sender_id, store.send_gift(&request).await) })
        }))
        .await;
        let mut sent = std::collections::HashMap::<i64, usize>::new();
        for result in results {
            let (sender, outcome) = result.unwrap();
            match outcome {
                Ok(GiftOutcome::Sent(..)) => *sent.entry(sender).or_default() += 1,
                Ok(GiftOutcome::Duplicate(..)) => {}
                Err(err) => panic!("{backend}: a retry of a paid gift was refused: {err}"),
            }
        }
        assert!(
            senders.iter().all(|s| sent.get(s) == Some(&1)),
            "{backend}: each key charged exactly once: {sent:?}"
        );
        let (coins, earnings, lowest) = store.coins_in_circulation().await.unwrap();
        assert_eq!((coins, earnings, lowest), (0, 30, 0), "{backend}");
        store.close().await;
    }
}

/// A transaction that reads and then writes must not fail because another connection
/// committed in between (SQLite's `SQLITE_BUSY_SNAPSHOT`, which `busy_timeout` does not
/// wait out): scheduling shows while a live room's viewer count is written all the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_that_read_first_survive_concurrent_commits() {
    for (backend, store, _) in stores().await {
        let host = store
            .create_user(&user(&format!("busy{}", rand_suffix())))
            .await
            .unwrap();
        let id = format!("busy-{}", rand_suffix());
        store.create_room(&room(&id, host.id)).await.unwrap();
        let writer = {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                for viewers in 0..2000 {
                    store.set_room_live(&id, true, viewers).await.unwrap();
                }
            })
        };
        let now = signaling::store::now_ms() / 1000;
        let mut failures = Vec::new();
        for n in 0..40 {
            // Each schedule counts the room's upcoming shows, then inserts (one transaction).
            match store
                .create_schedule(&id, now + 3600 + n, "busy", now)
                .await
            {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => {} // past the per-room cap: expected
                Err(err) => failures.push(err.to_string()),
            }
            // Clear the room so the cap is not what stops us.
            if n % 15 == 14 {
                for show in store.upcoming_schedules(&id, now, None).await.unwrap() {
                    store.delete_schedule(&id, show.id).await.unwrap();
                }
            }
        }
        writer.abort();
        assert!(failures.is_empty(), "{backend}: {failures:?}");
    }
}
