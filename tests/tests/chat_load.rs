//! The load generator's chat scenario against an in-process server, small: every message
//! reaches every member and the tool's accounting adds up (no timing assertions — the
//! figures go to BENCHMARKS.md from `tests/bench/`).

use queqiao_tests::api::{ADMIN_PASSWORD, Api, server};
use queqiao_tests::chatload::{ChatLoadOptions, run};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_gets_every_message_and_likes_are_summed() {
    let server = server(None).await;
    let api = Api::new(&server);
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (host, host_token) = api.register("loadhost").await;
    api.make_host(&admin, host).await;
    let room = api.create_room(&host_token, json!({"title": "load"})).await;
    let report = run(ChatLoadOptions {
        base: server.base.clone(),
        room,
        members: 100,
        measured_members: 25,
        senders: 30,
        messages_per_sec: 40.0,
        likes_per_sec: 400.0,
        duration: Duration::from_secs(3),
        server_pid: Some(std::process::id()),
        progress: false,
    })
    .await
    .unwrap();
    assert!(report.messages_sent >= 100, "{report:?}");
    assert_eq!(report.deliveries, report.deliveries_expected, "{report:?}");
    assert_eq!(
        report.sender_errors, 0,
        "no rate-limit errors at these rates: {report:?}"
    );
    assert_eq!(report.disconnected, 0);
    assert_eq!(report.measured_members, 25);
    assert!(
        report.drained_bytes_per_member_per_sec > 1000.0,
        "the other 75 members received the chat too: {report:?}"
    );
    assert!(
        report.likes_sent > 0 && report.like_events_per_member_per_sec <= 4.5,
        "likes are batched: {report:?}"
    );
    assert!(
        report.delay_max_ms >= report.delay_p99_ms && report.delay_p99_ms >= report.delay_p50_ms
    );
    server.stop().await;
}
