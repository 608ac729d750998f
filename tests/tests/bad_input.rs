//! Bad input on the WHIP/WHEP surface gets the right status and a JSON error, and the
//! server keeps serving everyone else.

use queqiao_tests::clip::Clip;
use queqiao_tests::http::{HttpClient, SdpExchange};
use queqiao_tests::offers::publisher_offer;
use queqiao_tests::server::{TEST_TOKEN, TestServer};
use queqiao_tests::whep::{Viewer, ViewerOptions};
use queqiao_tests::whip::Publisher;
use std::sync::Arc;
use std::time::Duration;

fn assert_json_error(response: &SdpExchange, status: u16, code: &str) {
    assert_eq!(response.status, status, "body: {}", response.body);
    assert!(
        response
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json")),
        "content type {:?}",
        response.content_type
    );
    let body: serde_json::Value = serde_json::from_str(&response.body).expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "body: {}", response.body);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_get_clear_errors_and_the_server_keeps_serving() {
    let server =
        TestServer::start_with(|c| c.ice_servers = vec!["stun:stun.example.net:3478".into()])
            .await
            .unwrap();
    let http = HttpClient::new();
    let offer = publisher_offer().await.unwrap();
    let whip = server.whip("bad");

    // 401: no token, wrong token, not a bearer token.
    assert_json_error(
        &http.post_sdp(&whip, None, &offer).await.unwrap(),
        401,
        "unauthorized",
    );
    assert_json_error(
        &http.post_sdp(&whip, Some("wrong"), &offer).await.unwrap(),
        401,
        "unauthorized",
    );
    let basic = http
        .inner()
        .post(&whip)
        .header("content-type", "application/sdp")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(offer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(basic.headers()["www-authenticate"], "Bearer");

    // 415: not application/sdp.
    let wrong_type = http
        .post_raw(
            &whip,
            Some(TEST_TOKEN),
            "application/json",
            offer.clone().into_bytes(),
        )
        .await
        .unwrap();
    assert_json_error(&wrong_type, 415, "unsupported_media_type");

    // 400: not SDP at all, SDP without ICE credentials, binary garbage, a bad room id.
    assert_json_error(
        &http
            .post_sdp(&whip, Some(TEST_TOKEN), "hello, world")
            .await
            .unwrap(),
        400,
        "bad_request",
    );
    let no_ice = offer
        .lines()
        .filter(|l| !l.starts_with("a=ice-ufrag"))
        .collect::<Vec<_>>()
        .join("\r\n");
    assert_json_error(
        &http
            .post_sdp(&whip, Some(TEST_TOKEN), &no_ice)
            .await
            .unwrap(),
        400,
        "bad_request",
    );
    let garbage = http
        .post_raw(
            &whip,
            Some(TEST_TOKEN),
            "application/sdp",
            vec![0xff, 0xfe, 0x00, 0x80],
        )
        .await
        .unwrap();
    assert_json_error(&garbage, 400, "bad_request");
    let bad_room = http
        .post_sdp(&server.whip("no%20spaces"), Some(TEST_TOKEN), &offer)
        .await
        .unwrap();
    assert_json_error(&bad_room, 400, "bad_request");

    // 413: a body over 64 KiB.
    let huge = format!(
        "{offer}{}",
        "a=padding:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(2000)
    );
    assert!(huge.len() > 64 * 1024);
    assert_json_error(
        &http.post_sdp(&whip, Some(TEST_TOKEN), &huge).await.unwrap(),
        413,
        "payload_too_large",
    );

    // 422: well-formed, but no codec we can forward (only PCMU and AV1 offered).
    let unusable = offer
        .replace("H264/90000", "AV1/90000")
        .replace("opus/48000/2", "PCMU/8000");
    assert_json_error(
        &http
            .post_sdp(&whip, Some(TEST_TOKEN), &unusable)
            .await
            .unwrap(),
        422,
        "unprocessable",
    );

    // 404: watching a room nobody publishes to.
    let viewer_offer = offer.replace("a=sendonly", "a=recvonly");
    assert_json_error(
        &http
            .post_sdp(&server.whep("nobody-here"), None, &viewer_offer)
            .await
            .unwrap(),
        404,
        "not_found",
    );

    // 409: a second publisher while the first is live.
    let publisher = Publisher::start(
        &whip,
        Some(TEST_TOKEN),
        Arc::new(Clip::default_360p().unwrap()),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_json_error(
        &http
            .post_sdp(&whip, Some(TEST_TOKEN), &offer)
            .await
            .unwrap(),
        409,
        "conflict",
    );

    // 422 for a viewer that can receive none of the room's codecs.
    let deaf_viewer = viewer_offer
        .replace("H264/90000", "AV1/90000")
        .replace("opus/48000/2", "PCMU/8000");
    assert_json_error(
        &http
            .post_sdp(&server.whep("bad"), None, &deaf_viewer)
            .await
            .unwrap(),
        422,
        "unprocessable",
    );

    // After all that, the server still serves: a viewer joins and receives video.
    let viewer = Viewer::start(&server.whep("bad"), ViewerOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(viewer.snapshot().video.packets > 20);
    let health = http.get_json(&server.url("/healthz")).await.unwrap();
    assert_eq!(health.0, 200);
    viewer.close().await;
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resources_follow_rfc_9725() {
    let server = TestServer::start_with(|c| {
        c.ice_servers = vec![
            "stun:stun.example.net:3478".into(),
            "turn:turn.example.net:3478?transport=udp username=alice credential=secret".into(),
        ]
    })
    .await
    .unwrap();
    let http = HttpClient::new();
    let publisher = Publisher::start(
        &server.whip("rfc"),
        Some(TEST_TOKEN),
        Arc::new(Clip::default_360p().unwrap()),
    )
    .await
    .unwrap();
    let offer = publisher_offer()
        .await
        .unwrap()
        .replace("a=sendonly", "a=recvonly");
    let created = http
        .post_sdp(&server.whep("rfc"), None, &offer)
        .await
        .unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(created.content_type.as_deref(), Some("application/sdp"));
    assert!(created.body.starts_with("v=0"));
    assert!(created.body.contains("a=ice-lite"));
    let location = created.location.clone().unwrap();
    assert!(location.starts_with("/whep/rfc/"), "{location}");
    let etag = created.etag.clone().unwrap();
    assert_eq!(created.links.len(), 2, "{:?}", created.links);
    assert_eq!(
        created.links[0],
        "<stun:stun.example.net:3478>; rel=\"ice-server\""
    );
    assert!(
        created.links[1].contains("username=\"alice\"")
            && created.links[1].contains("credential-type=\"password\"")
    );

    let session = server.url(&location);
    let patch = |content_type: &'static str, if_match: Option<&str>| {
        let mut request = http
            .inner()
            .patch(&session)
            .header("content-type", content_type)
            .body("a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n");
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    // Trickle ICE is accepted (ICE-lite needs no remote candidates).
    assert_eq!(
        patch("application/trickle-ice-sdpfrag", Some(&etag))
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        patch("application/trickle-ice-sdpfrag", Some("\"stale\""))
            .await
            .unwrap()
            .status(),
        412
    );
    assert_eq!(
        patch("application/trickle-ice-sdpfrag", Some("*"))
            .await
            .unwrap()
            .status(),
        422,
        "ICE restart refused"
    );
    assert_eq!(
        patch("text/plain", Some(&etag)).await.unwrap().status(),
        415
    );

    // OPTIONS advertises the ICE servers and what the endpoint takes; CORS preflight works.
    let options = http
        .inner()
        .request(reqwest::Method::OPTIONS, server.whip("rfc"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 204);
    assert_eq!(options.headers().get_all("link").iter().count(), 2);
    assert_eq!(options.headers()["accept-post"], "application/sdp");
    let preflight = http
        .inner()
        .request(reqwest::Method::OPTIONS, server.whep("rfc"))
        .header("origin", "https://demo.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let exposed = preflight
        .headers()
        .get("access-control-expose-headers")
        .map(|v| v.to_str().unwrap().to_lowercase());
    assert!(exposed.is_none_or(|v| v.contains("location")));

    // DELETE ends it; the resource is gone afterwards.
    assert_eq!(http.delete(&session, None).await.unwrap(), 200);
    assert_eq!(
        patch("application/trickle-ice-sdpfrag", Some(&etag))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(http.delete(&session, None).await.unwrap(), 404);
    assert_eq!(
        http.delete(&server.url("/whep/rfc/not-a-session"), None)
            .await
            .unwrap(),
        404
    );
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}
