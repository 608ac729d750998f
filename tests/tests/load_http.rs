//! The `flv` and `hls` load scenarios against an in-process server: a WHIP publisher, a few
//! HTTP players each, and a report with plausible figures. Loose bounds only: this runs on
//! small, loaded CI machines.

use queqiao_tests::load::http_players::{self, FlvArgs, HlsArgs, HlsVariant, HttpArgs, HttpReport};
use queqiao_tests::load::report::ReportArgs;
use queqiao_tests::server::{TEST_TOKEN, TestServer};

fn args(server: &TestServer, room: &str, players: usize, duration: f64) -> HttpArgs {
    HttpArgs {
        whip: server.url("/whip/{room}"),
        play_url: None,
        room: Some(room.to_owned()),
        token: Some(TEST_TOKEN.to_owned()),
        players,
        ramp_per_sec: 0.0,
        warmup: 1.0,
        duration,
        clip: "720p".into(),
        pacing: 2.5,
        stall_ms: None,
        server_pid: Some(std::process::id()),
        output: ReportArgs {
            quiet: true,
            ..Default::default()
        },
    }
}

fn check(report: &HttpReport, players: usize) {
    let row = report.markdown_row();
    eprintln!("{}\n{row}", HttpReport::markdown_header());
    assert_eq!(report.players, players, "{row}");
    assert_eq!(report.players_first_frame, players, "{report:#?}");
    assert_eq!(report.players_connected, players, "{report:#?}");
    assert!(report.delay_ms.count > 0, "{report:#?}");
    let max = report.delay_ms.max.unwrap();
    assert!(max > 0.0 && max < 5_000.0, "{report:#?}");
    assert_eq!(report.errors, 0, "{report:#?}");
    assert!(report.bytes_per_second_per_player > 10_000.0, "{report:#?}");
    assert!(report.ttff_ms.count as usize == players, "{report:#?}");
    assert!(report.server.cpu_percent.is_some(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flv_and_llhls_players_measure_the_delay_to_the_live_edge() {
    let server = TestServer::start().await.unwrap();
    let report = http_players::run_flv(FlvArgs {
        common: args(&server, "load-http-flv", 3, 3.0),
    })
    .await
    .unwrap();
    check(&report, 3);
    assert_eq!(report.scenario, "flv");
    // Every frame is measured: ~30 per second per player, less whatever a slow machine
    // keeps in flight at the window's edges.
    assert!(report.delay_ms.count >= 3 * 30, "{report:#?}");

    let report = http_players::run_hls(HlsArgs {
        common: args(&server, "load-http-llhls", 3, 4.0),
        variant: HlsVariant::Llhls,
    })
    .await
    .unwrap();
    check(&report, 3);
    assert_eq!(report.scenario, "llhls");
    // One sample per ~200 ms part.
    assert!(report.delay_ms.count >= 3 * 4, "{report:#?}");
    server.stop().await;
}
