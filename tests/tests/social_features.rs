//! Issue 16 (server side) against a real server: the host's online viewer list, dating
//! profile fields and the public profile card, image uploads (raw and multipart, with
//! oversized, mistyped, bomb and broken images refused), share links with a QR code,
//! scheduled shows with reservations, and live notices over `/ws/me` plus the signed
//! operator webhook delivered from the outbox to a real local HTTP receiver.

use hmac::Mac;
use queqiao_tests::api::{ADMIN_PASSWORD, Api, server, server_with};
use queqiao_tests::clip::Clip;
use queqiao_tests::postgres::fresh_database;
use queqiao_tests::whip::Publisher;
use queqiao_tests::ws::RoomSocket;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A JPEG with an EXIF segment carrying a marker text (as a phone's GPS tags would).
fn jpeg_with_exif(marker: &[u8]) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(300, 200, image::Rgb([10, 200, 30]));
    let mut plain = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut plain), image::ImageFormat::Jpeg)
        .unwrap();
    // APP1 "Exif\0\0" + a little-endian TIFF header with no IFD entries, then the marker.
    let mut payload = b"Exif\0\0II*\0\x08\0\0\0\0\0".to_vec();
    payload.extend_from_slice(marker);
    let length = (payload.len() + 2) as u16;
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&plain[2..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A tiny PNG whose header claims `width`×`height` pixels (a decompression bomb's shape).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
        out
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// POSTs raw bytes: `(status, JSON body)`.
async fn post_bytes(
    api: &Api,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let response = api
        .http
        .post_raw(&format!("{}{path}", api.base), token, content_type, body)
        .await
        .unwrap();
    (
        response.status,
        serde_json::from_str(&response.body).unwrap_or(Value::Null),
    )
}

fn multipart(field: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "queqiao-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn get_raw(api: &Api, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = api.http.inner().get(format!("{}{path}", api.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_reencoded_and_served() {
    let server = server(None).await;
    let api = Api::new(&server);
    let (_, alice) = api.register("alice").await;
    let alice = Some(alice.as_str());

    // Raw PNG as an avatar: scaled to 400 px, served as an immutable JPEG.
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=avatar",
        alice,
        "image/png",
        png(1000, 600),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(400), Some(240)),
        "{body}"
    );
    let url = body["url"].as_str().unwrap().to_owned();
    assert_eq!(
        url,
        format!("/uploads/{}.jpg", body["id"].as_str().unwrap())
    );
    let served = get_raw(&api, &url, None).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert!(
        served.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let bytes = served.bytes().await.unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF]);
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    let dir = server.data_dir().join("uploads");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(
        mode(&dir.join(format!("{}.jpg", body["id"].as_str().unwrap()))),
        0o600
    );

    // A JPEG with EXIF, declared as PNG: the type comes from the bytes; EXIF is dropped.
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        alice,
        "image/png",
        jpeg_with_exif(b"SECRET-GPS-31.2304N"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(300), Some(200))
    );
    let stored = get_raw(&api, body["url"].as_str().unwrap(), None)
        .await
        .bytes()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert!(
        !text.contains("SECRET-GPS") && !text.contains("Exif"),
        "EXIF survived"
    );

    // Multipart (wx.uploadFile) with the `file` field, as a cover (≤ 1280 px).
    let (content_type, form) = multipart("file", &png(2000, 1000));
    let (status, body) =
        post_bytes(&api, "/api/uploads?kind=cover", alice, &content_type, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(1280), Some(640))
    );
    let (content_type, form) = multipart("picture", &png(20, 20));
    let (status, body) =
        post_bytes(&api, "/api/uploads?kind=photo", alice, &content_type, form).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("file")),
        "{body}"
    );

    // Bad input, each with its status and code.
    let small = png(20, 20);
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        None,
        "image/png",
        small.clone(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=banner",
        alice,
        "image/png",
        small.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("kind")),
        "{body}"
    );
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        alice,
        "text/plain",
        small.clone(),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        alice,
        "image/png",
        b"GIF89a\x01\x00\x01\x00".to_vec(),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let mut huge = png(16, 16);
    huge.resize(5 * 1024 * 1024 + 1, 0);
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        alice,
        "image/png",
        huge.clone(),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (413, Some("payload_too_large")),
        "{body}"
    );
    let (content_type, form) = multipart("file", &huge);
    let (status, body) =
        post_bytes(&api, "/api/uploads?kind=photo", alice, &content_type, form).await;
    assert_eq!(
        (status, code(&body)),
        (413, Some("payload_too_large")),
        "{body}"
    );
    for (w, h) in [(20_000, 20_000), (7000, 7000)] {
        let (status, body) = post_bytes(
            &api,
            "/api/uploads?kind=photo",
            alice,
            "image/png",
            png_claiming(w, h),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (422, Some("image_too_large")),
            "{w}×{h}: {body}"
        );
    }
    let mut truncated = png(64, 64);
    truncated.truncate(80);
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        alice,
        "image/png",
        truncated,
    )
    .await;
    assert_eq!((status, code(&body)), (422, Some("bad_image")), "{body}");

    // Serving: unknown and malformed names are 404 JSON errors.
    for path in [
        "/uploads/0123456789abcdef0123456789abcdef.jpg",
        "/uploads/..%2Fqueqiao.db",
        "/uploads/x.jpg",
    ] {
        let response = get_raw(&api, path, None).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), Some("not_found"), "{path}");
    }
    server.stop().await;
}

async fn profile_card(database_url: Option<String>) {
    let server = server(database_url).await;
    let api = Api::new(&server);
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (alice_id, alice) = api.register("alice").await;
    let (_, bob) = api.register("bob").await;
    let alice = Some(alice.as_str());

    let (status, upload) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        alice,
        "image/png",
        png(50, 50),
    )
    .await;
    assert_eq!(status, 201, "{upload}");
    let photo = upload["url"].as_str().unwrap().to_owned();
    let (_, bobs) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        Some(&bob),
        "image/png",
        png(50, 50),
    )
    .await;
    let bobs_photo = bobs["url"].as_str().unwrap().to_owned();

    let (status, me) = api
        .call(
            Method::PATCH,
            "/api/me",
            alice,
            Some(json!({"height_cm": 165, "education": "master", "partner_preferences": "  真诚、爱笑、喜欢旅行  ",
                        "photos": [photo, photo], "birth_year": 1995, "city": "杭州", "avatar_url": photo})),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["height_cm"], 165);
    assert_eq!(me["education"], "master");
    assert_eq!(me["partner_preferences"], "真诚、爱笑、喜欢旅行");
    assert_eq!(me["photos"], json!([photo]), "duplicates folded");

    for (body, field) in [
        (json!({"height_cm": 119}), "height_cm"),
        (json!({"height_cm": 231}), "height_cm"),
        (json!({"education": "phd"}), "education"),
        (
            json!({"partner_preferences": "x".repeat(301)}),
            "partner_preferences",
        ),
        (
            json!({"partner_preferences": "a\u{202E}b"}),
            "partner_preferences",
        ),
        (
            json!({"photos": ["https://elsewhere.example/a.jpg"]}),
            "photos",
        ),
        (json!({"photos": vec![photo.clone(); 10]}), "photos"),
        (json!({"photos": [bobs_photo]}), "photos"),
        (
            json!({"photos": ["/uploads/0123456789abcdef0123456789abcdef.jpg"]}),
            "photos",
        ),
    ] {
        let (status, error) = api
            .call(Method::PATCH, "/api/me", alice, Some(body.clone()))
            .await;
        assert_eq!(
            (status, code(&error), error["error"]["field"].as_str()),
            (422, Some("validation"), Some(field)),
            "{body}: {error}"
        );
    }
    let (status, error) = api
        .call(
            Method::PATCH,
            "/api/me",
            alice,
            Some(json!({"height_cm": "tall"})),
        )
        .await;
    assert_eq!(status, 422, "{error}");

    // The public card: anonymous callers see no `following`; a follower sees it true.
    let (status, card) = api
        .call(Method::GET, &format!("/api/users/{alice_id}"), None, None)
        .await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["height_cm"], 165);
    assert_eq!(card["education"], "master");
    assert_eq!(card["photos"], json!([photo]));
    assert_eq!(
        card["age"],
        json!(signaling::validate::current_year() - 1995)
    );
    assert_eq!(card["followers"], 0);
    assert_eq!(card["live_room_id"], Value::Null);
    assert!(card.get("following").is_none(), "{card}");
    assert!(
        card.get("phone").is_none() && card.get("username").is_none(),
        "private fields: {card}"
    );
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/users/{alice_id}/follow"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, card) = api
        .call(
            Method::GET,
            &format!("/api/users/{alice_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(
        (card["following"].clone(), card["followers"].clone()),
        (json!(true), json!(1)),
        "{card}"
    );
    let (_, card) = api
        .call(
            Method::GET,
            &format!("/api/users/{alice_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(card["following"], false, "{card}");

    // null clears.
    let (status, me) = api
        .call(Method::PATCH, "/api/me", alice, Some(json!({"height_cm": null, "education": null, "partner_preferences": null, "photos": null})))
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (
            me["height_cm"].clone(),
            me["education"].clone(),
            me["photos"].clone()
        ),
        (Value::Null, Value::Null, json!([]))
    );

    // A room cover pointing at an upload.
    let (host_id, host) = api.register("hostess").await;
    api.make_host(&admin, host_id).await;
    let room = api.create_room(&host, json!({"title": "cover test"})).await;
    let (_, cover) = post_bytes(
        &api,
        "/api/uploads?kind=cover",
        Some(&host),
        "image/png",
        png(64, 36),
    )
    .await;
    let (status, updated) = api
        .call(
            Method::PATCH,
            &format!("/api/rooms/{room}"),
            Some(&host),
            Some(json!({"cover_url": cover["url"]})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["cover_url"], cover["url"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_per_account_are_rate_limited() {
    // Per-account limits apply to clients outside `limits_exempt`: clear it.
    let server = server_with(None, |c| {
        c.limits_exempt.clear();
        c.uploads_per_hour_per_user = 10; // a burst of 2
    })
    .await;
    let api = Api::new(&server);
    let (_, alice) = api.register("alice").await;
    let (_, bob) = api.register("bob").await;
    for _ in 0..2 {
        let (status, body) = post_bytes(
            &api,
            "/api/uploads?kind=photo",
            Some(&alice),
            "image/png",
            png(32, 32),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let refused = api
        .http
        .inner()
        .post(format!("{}/api/uploads?kind=photo", api.base))
        .bearer_auth(&alice)
        .header("content-type", "image/png")
        .body(png(32, 32))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 10 an hour: the next one comes back within 6 minutes.
    assert!(
        (1..=360).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(code(&body), Some("too_many_requests"), "{body}");
    // Another account is not affected.
    let (status, body) = post_bytes(
        &api,
        "/api/uploads?kind=photo",
        Some(&bob),
        "image/png",
        png(32, 32),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}

/// Uploads that nothing uses are deleted after the grace period (here: zero, run by hand);
/// an avatar, profile photos and a room cover are kept, until they are replaced.
async fn orphan_uploads_are_deleted(database_url: Option<String>) {
    let server = server(database_url).await;
    let api = Api::new(&server);
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (alice_id, alice) = api.register("alice").await;
    api.make_host(&admin, alice_id).await;
    let mut urls = Vec::new();
    for kind in ["avatar", "photo", "photo", "cover", "photo"] {
        let (status, body) = post_bytes(
            &api,
            &format!("/api/uploads?kind={kind}"),
            Some(&alice),
            "image/png",
            png(40, 30),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        urls.push(body["url"].as_str().unwrap().to_owned());
    }
    let (avatar, photos, cover, unused) = (&urls[0], &urls[1..3], &urls[3], &urls[4]);
    let (status, body) = api
        .call(
            Method::PATCH,
            "/api/me",
            Some(&alice),
            Some(json!({"avatar_url": format!("{}{avatar}", api.base), "photos": photos})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = api.create_room(&alice, json!({"title": "封面"})).await;
    let (status, body) = api
        .call(
            Method::PATCH,
            &format!("/api/rooms/{room}"),
            Some(&alice),
            Some(json!({"cover_url": cover})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let store = &server.server.store;
    let dir = server.data_dir().join("uploads");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A day's grace: nothing is old enough.
    let deleted = signaling::upload_cleanup::enforce(store, &dir, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    let deleted = signaling::upload_cleanup::enforce(store, &dir, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "only the unused photo is an orphan");
    assert_eq!(get_raw(&api, unused, None).await.status(), 404);
    let unused_id = unused
        .trim_start_matches("/uploads/")
        .trim_end_matches(".jpg");
    assert!(!dir.join(format!("{unused_id}.jpg")).exists());
    for url in [avatar, &photos[0], &photos[1], cover] {
        assert_eq!(get_raw(&api, url, None).await.status(), 200, "{url}");
    }
    // Replacing the avatar and dropping a photo orphans them.
    let (status, body) = api
        .call(
            Method::PATCH,
            "/api/me",
            Some(&alice),
            Some(json!({"avatar_url": null, "photos": [&photos[1]]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deleted = signaling::upload_cleanup::enforce(store, &dir, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(get_raw(&api, avatar, None).await.status(), 404);
    assert_eq!(get_raw(&api, &photos[0], None).await.status(), 404);
    assert_eq!(get_raw(&api, &photos[1], None).await.status(), 200);
    assert_eq!(get_raw(&api, cover, None).await.status(), 200);
    // The profile still validates: its remaining photo is still one of alice's uploads.
    let (status, body) = api
        .call(
            Method::PATCH,
            "/api/me",
            Some(&alice),
            Some(json!({"photos": [&photos[1]]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_uploads_are_deleted_on_sqlite() {
    orphan_uploads_are_deleted(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_uploads_are_deleted_on_postgres() {
    if let Some(url) = fresh_database().await {
        orphan_uploads_are_deleted(Some(url)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_card_on_sqlite() {
    profile_card(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_card_on_postgres() {
    if let Some(url) = fresh_database().await {
        profile_card(Some(url)).await;
    }
}

async fn viewers_share_and_schedule(database_url: Option<String>) {
    let server = server(database_url).await;
    let api = Api::new(&server);
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (host_id, host) = api.register("hostess").await;
    api.make_host(&admin, host_id).await;
    let (alice_id, alice) = api.register("alice").await;
    let room = api.create_room(&host, json!({"title": "周末相亲局"})).await;
    let viewers = format!("/api/rooms/{room}/viewers");

    // The online viewer list: the host's own socket is not an audience member.
    let _studio = RoomSocket::connect(&server.base, &room, Some(&host))
        .await
        .unwrap();
    let _alice_socket = RoomSocket::connect(&server.base, &room, Some(&alice))
        .await
        .unwrap();
    let _anonymous = RoomSocket::connect(&server.base, &room, None)
        .await
        .unwrap();
    let (status, list) = api.call(Method::GET, &viewers, Some(&host), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        (list["count"].clone(), list["anonymous"].clone()),
        (json!(2), json!(1)),
        "{list}"
    );
    assert_eq!(list["viewers"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["viewers"][0]["user_id"], alice_id);
    assert_eq!(list["viewers"][0]["nickname"], "alice");
    assert!(list["viewers"][0]["joined_at"].as_i64().unwrap() > 0);
    let (status, _) = api.call(Method::GET, &viewers, Some(&admin), None).await;
    assert_eq!(status, 200);
    let (status, body) = api.call(Method::GET, &viewers, Some(&alice), None).await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");
    let (status, body) = api.call(Method::GET, &viewers, None, None).await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    let (status, _) = api
        .call(
            Method::GET,
            "/api/rooms/no-such-room/viewers",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Share links and the QR code.
    let (status, share) = api
        .call(Method::GET, &format!("/api/rooms/{room}/share"), None, None)
        .await;
    assert_eq!(status, 200, "{share}");
    assert_eq!(share["web_url"], format!("{}/#/room/{room}", server.base));
    assert_eq!(
        share["miniprogram_path"],
        format!("pages/room/room?id={room}")
    );
    assert_eq!(share["qr_svg_url"], format!("/api/rooms/{room}/share.svg"));
    let svg = get_raw(&api, &format!("/api/rooms/{room}/share.svg"), None).await;
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
    let private = api
        .create_room(&host, json!({"title": "私密", "visibility": "private"}))
        .await;
    for path in [
        format!("/api/rooms/{private}/share"),
        format!("/api/rooms/{private}/share.svg"),
    ] {
        let (status, body) = api.call(Method::GET, &path, Some(&alice), None).await;
        assert_eq!(
            (status, code(&body)),
            (404, Some("not_found")),
            "{path}: {body}"
        );
        let (status, _) = api.call(Method::GET, &path, None, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/api/rooms/{private}/share"),
            Some(&host),
            None,
        )
        .await;
    assert_eq!(status, 200);

    // Scheduled shows and reservations.
    let now = signaling::store::now_ms() / 1000;
    let schedule = format!("/api/rooms/{room}/schedule");
    let starts = now + 3600;
    let (status, body) = api
        .call(
            Method::POST,
            &schedule,
            Some(&alice),
            Some(json!({"starts_at": starts, "title": "x"})),
        )
        .await;
    assert_eq!((status, code(&body)), (403, Some("forbidden")), "{body}");
    for (body, field) in [
        (json!({"starts_at": now - 10, "title": "过去"}), "starts_at"),
        (
            json!({"starts_at": now + 31 * 86_400, "title": "太远"}),
            "starts_at",
        ),
        (json!({"starts_at": starts, "title": ""}), "title"),
    ] {
        let (status, error) = api
            .call(Method::POST, &schedule, Some(&host), Some(body.clone()))
            .await;
        assert_eq!(
            (status, error["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {error}"
        );
    }
    let (status, show) = api
        .call(
            Method::POST,
            &schedule,
            Some(&host),
            Some(json!({"starts_at": starts, "title": "周五八点相亲"})),
        )
        .await;
    assert_eq!(status, 201, "{show}");
    assert_eq!(
        (
            show["room_id"].as_str(),
            show["starts_at"].as_i64(),
            show["reservations"].as_i64()
        ),
        (Some(room.as_str()), Some(starts), Some(0))
    );
    let sid = show["id"].as_i64().unwrap();
    let reservation = format!("/api/schedules/{sid}/reservation");
    let (status, body) = api.call(Method::POST, &reservation, None, None).await;
    assert_eq!((status, code(&body)), (401, Some("unauthorized")), "{body}");
    for _ in 0..2 {
        let (status, body) = api
            .call(Method::POST, &reservation, Some(&alice), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["reserved"].clone(), body["reservations"].clone()),
            (json!(true), json!(1)),
            "{body}"
        );
    }
    let (_, list) = api.call(Method::GET, &schedule, Some(&alice), None).await;
    assert_eq!(list[0]["reserved"], true, "{list}");
    let (_, list) = api.call(Method::GET, &schedule, None, None).await;
    assert!(list[0].get("reserved").is_none(), "{list}");
    assert_eq!(list[0]["reservations"], 1);
    let (_, mine) = api
        .call(Method::GET, "/api/me/reservations", Some(&alice), None)
        .await;
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    let (status, body) = api
        .call(Method::DELETE, &reservation, Some(&alice), None)
        .await;
    assert_eq!(
        (status, body["reservations"].clone()),
        (200, json!(0)),
        "{body}"
    );
    let (status, _) = api
        .call(
            Method::POST,
            "/api/schedules/999999/reservation",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, private_show) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{private}/schedule"),
            Some(&host),
            Some(json!({"starts_at": starts, "title": "秘密"})),
        )
        .await;
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/schedules/{}/reservation", private_show["id"]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 404, "a private room's show is hidden like the room");
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("{schedule}/{sid}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("{schedule}/{sid}"),
            Some(&host),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("{schedule}/{sid}"),
            Some(&host),
            None,
        )
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_share_and_schedule_on_sqlite() {
    viewers_share_and_schedule(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_share_and_schedule_on_postgres() {
    if let Some(url) = fresh_database().await {
        viewers_share_and_schedule(Some(url)).await;
    }
}

/// A request the webhook receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A real HTTP/1.1 receiver on a free port: answers the first `failures` requests with 500,
/// the rest with 204, and records each request.
async fn webhook_receiver(failures: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/queqiao", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                break;
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    let body =
                        String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).to_string();
                    let count = {
                        let mut log = log.lock().unwrap();
                        log.push(Received { headers, body });
                        log.len()
                    };
                    let status = if count <= failures {
                        "500 Internal Server Error"
                    } else {
                        "204 No Content"
                    };
                    let _ = stream
                        .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                        .await;
                    return;
                }
            });
        }
    });
    (url, received)
}

/// The `/ws/me` socket of a user: its text frames as JSON.
async fn me_socket(
    base: &str,
    token: &str,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<Value>>>) {
    use futures::StreamExt;
    let url = format!("{}/ws/me?token={token}", base.replacen("http", "ws", 1));
    let (stream, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&frames);
    let (_, mut source) = stream.split();
    let task = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message
                && let Ok(value) = serde_json::from_str::<Value>(text.as_str())
            {
                log.lock().unwrap().push(value);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !frames.lock().unwrap().iter().any(|f| f["type"] == "ready") {
        assert!(Instant::now() < deadline, "no ready frame on /ws/me");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (task, frames)
}

async fn wait_for<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_live_notifies_followers_and_reservers_in_app_and_by_webhook() {
    let (hook_url, received) = webhook_receiver(1).await;
    let server = server_with(None, |c| {
        c.webhooks.url = Some(hook_url.clone());
        c.webhooks.secret = Some("s3cret".into());
        c.webhooks.retry_base_ms = 100;
    })
    .await;
    let api = Api::new(&server);
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (host_id, host) = api.register("hostess").await;
    api.make_host(&admin, host_id).await;
    let (alice_id, alice) = api.register("alice").await;
    let (bob_id, bob) = api.register("bob").await;
    let (_, carol) = api.register("carol").await;
    let room = api.create_room(&host, json!({"title": "周末相亲局"})).await;
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/users/{host_id}/follow"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let now = signaling::store::now_ms() / 1000;
    let (_, show) = api
        .call(
            Method::POST,
            &format!("/api/rooms/{room}/schedule"),
            Some(&host),
            Some(json!({"starts_at": now + 600, "title": "今晚八点见"})),
        )
        .await;
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/schedules/{}/reservation", show["id"]),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 200);

    // /ws/me needs an account.
    let anonymous = tokio_tungstenite::connect_async(format!(
        "{}/ws/me",
        server.base.replacen("http", "ws", 1)
    ))
    .await;
    match anonymous {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("anonymous /ws/me was not refused: {other:?}"),
    }
    let (alice_task, alice_frames) = me_socket(&server.base, &alice).await;
    let (bob_task, bob_frames) = me_socket(&server.base, &bob).await;
    let (carol_task, carol_frames) = me_socket(&server.base, &carol).await;

    let publisher = Publisher::start(
        &server.whip(&room),
        Some(&host),
        Arc::new(Clip::default_360p().unwrap()),
    )
    .await
    .unwrap();
    let notice_of = |frames: &Arc<Mutex<Vec<Value>>>| {
        frames
            .lock()
            .unwrap()
            .iter()
            .find(|f| f["type"] == "notice")
            .cloned()
    };
    let alice_notice = wait_for("alice's notice", 20, || notice_of(&alice_frames)).await;
    assert_eq!(alice_notice["notice"]["kind"], "live", "{alice_notice}");
    assert_eq!(alice_notice["notice"]["room_id"], room.as_str());
    assert_eq!(alice_notice["notice"]["title"], "周末相亲局");
    assert_eq!(alice_notice["notice"]["host"]["id"], host_id);
    assert_eq!(alice_notice["notice"]["host"]["nickname"], "hostess");
    assert!(alice_notice["notice"]["at"].as_i64().unwrap() > 0);
    let bob_notice = wait_for("bob's notice", 10, || notice_of(&bob_frames)).await;
    assert_eq!(
        bob_notice["notice"]["kind"], "scheduled_live",
        "{bob_notice}"
    );
    assert_eq!(bob_notice["notice"]["title"], "今晚八点见");

    // The live room shows on the host's public card.
    let (_, card) = api
        .call(Method::GET, &format!("/api/users/{host_id}"), None, None)
        .await;
    let card = if card["live_room_id"].is_null() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        api.call(Method::GET, &format!("/api/users/{host_id}"), None, None)
            .await
            .1
    } else {
        card
    };
    assert_eq!(card["live_room_id"], room.as_str(), "{card}");

    // The webhook: refused once (500), retried, accepted; same id, valid signatures.
    let deliveries = wait_for("two webhook attempts", 20, || {
        let log = received.lock().unwrap();
        (log.len() >= 2).then(|| log.clone())
    })
    .await;
    let first: Value = serde_json::from_str(&deliveries[0].body).unwrap();
    let second: Value = serde_json::from_str(&deliveries[1].body).unwrap();
    assert_eq!(first, second, "a retry sends the same event");
    assert_eq!(first["type"], "host_live");
    assert_eq!(first["room_id"], room.as_str());
    assert_eq!(first["host_id"], host_id);
    let mut expected = vec![alice_id, bob_id];
    expected.sort_unstable();
    assert_eq!(first["recipients"], json!(expected));
    let id = first["id"].as_str().unwrap().to_owned();
    for delivery in &deliveries {
        assert_eq!(delivery.header("x-queqiao-event-id"), Some(id.as_str()));
        assert_eq!(delivery.header("content-type"), Some("application/json"));
        let signature = delivery.header("x-queqiao-signature").unwrap();
        let (t, v1) = signature.split_once(',').unwrap();
        let t = t.strip_prefix("t=").unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(format!("{t}.{}", delivery.body).as_bytes());
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            v1.strip_prefix("v1=").unwrap(),
            expected,
            "signature of {signature}"
        );
        assert!((t.parse::<i64>().unwrap() - now).abs() < 120);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let state = loop {
        let state = server.server.store.webhook_state(&id).await.unwrap();
        if state.1 || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(state, (2, true, false));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "a delivered event is not sent again"
    );
    assert!(
        notice_of(&carol_frames).is_none(),
        "carol neither follows nor reserved"
    );

    drop(publisher);
    for task in [alice_task, bob_task, carol_task] {
        task.abort();
    }
    server.stop().await;
}
