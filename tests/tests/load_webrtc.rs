//! The `webrtc` load scenario against an in-process server, with browser-like viewers:
//! every viewer sends receiver reports, nothing is lost on loopback so nothing needs a NACK
//! or a PLI, and the publisher (an encoder that answers PLIs) is not asked for keyframes by
//! viewers that joined on the server's cached GOP. Loose bounds on timing only: this runs
//! on small, loaded machines.

use queqiao_tests::load::peer::FeedbackMode;
use queqiao_tests::load::report::{ReportArgs, WebrtcReport};
use queqiao_tests::load::webrtc::{self, SocketMode, ViewerEngine, WebrtcArgs};
use queqiao_tests::server::{TEST_TOKEN, TestServer};

fn args(server: &TestServer, room: &str, viewers: usize) -> WebrtcArgs {
    WebrtcArgs {
        whip: server.url("/whip/{room}"),
        whep: None,
        room: Some(room.to_owned()),
        token: Some(TEST_TOKEN.to_owned()),
        whep_token: None,
        viewers,
        ramp_per_sec: 0.0,
        join_concurrency: 8,
        warmup: 1.0,
        duration: 3.0,
        clip: "720p".into(),
        h264: None,
        ogg: None,
        fps: 30,
        pacing: 2.5,
        server_pid: None,
        metrics: None,
        workers: 1,
        viewer_engine: ViewerEngine::Sansio,
        sockets: SocketMode::Auto,
        no_data_channel: true,
        drop_early_dtls: false,
        socket_buffer: 8 << 20,
        viewer_feedback: FeedbackMode::Browser,
        ignore_pli: false,
        output: ReportArgs {
            quiet: true,
            ..Default::default()
        },
    }
}

fn row(report: &WebrtcReport) -> String {
    format!(
        "{}\n{}\n{:#?}",
        WebrtcReport::markdown_header(),
        report.markdown_row(),
        report.viewer_feedback
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_like_viewers_report_and_ask_for_nothing_on_a_clean_network() {
    let server = TestServer::start().await.unwrap();
    let viewers = 6;
    let report = webrtc::run(args(&server, "load-webrtc-feedback", viewers))
        .await
        .unwrap();
    let row = row(&report);
    eprintln!("{row}");
    assert_eq!(report.viewers_connected, viewers, "{row}");
    assert_eq!(
        report.ttff_missing, 0,
        "every viewer decoded a keyframe: {row}"
    );
    let totals = report.viewer_feedback.totals;
    // ≥ 4 s connected (warm-up and window) at one compound report a second.
    assert!(
        totals.receiver_reports >= 3 * viewers as u64,
        "receiver reports: {row}"
    );
    // Loopback loses nothing: a NACK or a PLI here is a bug in the server's join (GOP replay
    // gaps or reordering) or in the viewers' scheduling.
    assert_eq!(totals.nacked_sequence_numbers, 0, "{row}");
    assert_eq!(totals.plis, 0, "{row}");
    assert_eq!(
        totals.twcc, 0,
        "the server negotiates no transport-cc for viewers"
    );
    assert!(report.loss < 0.01, "{row}");
    // The viewers joined on the server's keyframe cache: nobody had to ask the publisher.
    assert_eq!(report.publisher.plis, 0, "{row}");
    assert_eq!(report.publisher.keyframes_forced, 0, "{row}");
    server.stop().await;
}
