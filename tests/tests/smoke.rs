use queqiao_tests::clip::Clip;
use queqiao_tests::server::{TEST_TOKEN, TestServer};
use queqiao_tests::whep::{Viewer, ViewerOptions};
use queqiao_tests::whip::Publisher;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_two_viewers() {
    let server = TestServer::start().await.unwrap();
    let clip = Arc::new(Clip::default_360p().unwrap());
    let publisher = Publisher::start(&server.whip("smoke"), Some(TEST_TOKEN), clip)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = Viewer::start(&server.whep("smoke"), ViewerOptions::default())
        .await
        .unwrap();
    let b = Viewer::start(&server.whep("smoke"), ViewerOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for v in [&a, &b] {
        let s = v.snapshot();
        println!(
            "video {} ratio {:.3} gap {} audio {} dc {} first {:?}",
            s.video.packets,
            s.video.delivery_ratio(),
            s.video.largest_gap,
            s.audio.packets,
            s.room_channel_open,
            s.video.first_payloads.first().map(|p| p[0])
        );
    }
    println!("{:?}", server.server.sfu.stats().snapshot());
    println!("plis at publisher {}", publisher.pli_count().await);
    server.stop().await;
}
