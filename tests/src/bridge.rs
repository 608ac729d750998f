//! Helpers for the bridge's end-to-end tests: ffprobe, an HTTP-FLV reader that parses
//! tags as they arrive, a clip that changes resolution, and a real nginx-rtmp ingest.

use crate::clip::{Clip, media_dir};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What ffprobe found in a stream.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `-show_streams` output.
    pub streams: Vec<serde_json::Value>,
}

impl Probe {
    /// `(codec_name, width, height)` of the first video stream.
    pub fn video(&self) -> Option<(String, u64, u64)> {
        self.streams
            .iter()
            .find(|s| s["codec_type"] == "video")
            .map(|s| {
                (
                    s["codec_name"].as_str().unwrap_or_default().to_owned(),
                    s["width"].as_u64().unwrap_or(0),
                    s["height"].as_u64().unwrap_or(0),
                )
            })
    }

    /// `(codec_name, sample_rate, channels)` of the first audio stream.
    pub fn audio(&self) -> Option<(String, u64, u64)> {
        self.streams
            .iter()
            .find(|s| s["codec_type"] == "audio")
            .map(|s| {
                (
                    s["codec_name"].as_str().unwrap_or_default().to_owned(),
                    s["sample_rate"]
                        .as_str()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0),
                    s["channels"].as_u64().unwrap_or(0),
                )
            })
    }
}

/// Runs `ffprobe -show_streams` on a URL or file (40 s limit).
pub async fn ffprobe(url: &str) -> anyhow::Result<Probe> {
    let mut command = tokio::process::Command::new("ffprobe");
    command
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .args(["-analyzeduration", "3000000", "-probesize", "2000000"])
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(40), command.output())
        .await
        .with_context(|| format!("ffprobe {url} timed out"))?
        .context("running ffprobe")?;
    if !output.status.success() {
        bail!(
            "ffprobe {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(Probe {
        streams: json["streams"].as_array().cloned().unwrap_or_default(),
    })
}

/// One FLV tag as a test client saw it.
#[derive(Debug, Clone)]
pub struct FlvTagInfo {
    /// 8 audio, 9 video, 18 script.
    pub tag_type: u8,
    /// Milliseconds.
    pub timestamp: u32,
    /// A video keyframe.
    pub keyframe: bool,
    /// An AVC sequence header (AVCDecoderConfigurationRecord).
    pub avc_sequence_header: bool,
    /// An AAC sequence header.
    pub aac_sequence_header: bool,
    /// `width` from an `onMetaData` script tag.
    pub metadata_width: Option<f64>,
    /// When the client had the whole tag.
    pub received_at: Instant,
}

/// Incremental FLV parser (the load generator's tag reader, keeping what the tests check).
#[derive(Debug, Default)]
pub struct FlvParser {
    reader: crate::load::http_media::FlvReader,
    /// Tags parsed so far.
    pub tags: Vec<FlvTagInfo>,
}

impl FlvParser {
    /// Feeds bytes; parses every complete tag.
    pub fn push(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let now = Instant::now();
        let tags = &mut self.tags;
        self.reader.push(data, |tag| {
            let body = tag.body;
            let mut info = FlvTagInfo {
                tag_type: tag.tag_type,
                timestamp: tag.timestamp,
                keyframe: false,
                avc_sequence_header: false,
                aac_sequence_header: false,
                metadata_width: None,
                received_at: now,
            };
            match tag.tag_type {
                9 if body.len() >= 2 => {
                    info.keyframe = body[0] >> 4 == 1;
                    info.avc_sequence_header = body[1] == 0;
                }
                8 if body.len() >= 2 => info.aac_sequence_header = body[1] == 0,
                18 => info.metadata_width = amf_number(body, b"width"),
                _ => {}
            }
            tags.push(info);
        })?;
        Ok(())
    }
}

/// Finds `"name": number` in an AMF0 body (good enough for `onMetaData`).
fn amf_number(body: &[u8], name: &[u8]) -> Option<f64> {
    let mut key = (name.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(name);
    let at = body.windows(key.len()).position(|w| w == key.as_slice())? + key.len();
    if *body.get(at)? != 0 {
        return None;
    }
    let bytes: [u8; 8] = body.get(at + 1..at + 9)?.try_into().ok()?;
    Some(f64::from_be_bytes(bytes))
}

/// Reads an HTTP-FLV URL for `duration` (or until the server ends it) and returns the
/// tags and the response's content type.
pub async fn read_flv(url: &str, duration: Duration) -> anyhow::Result<(Vec<FlvTagInfo>, String)> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let response = client.get(url).send().await?;
    if !response.status().is_success() {
        bail!(
            "GET {url}: {} {}",
            response.status(),
            response.text().await?
        );
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut parser = FlvParser::default();
    let mut response = response;
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => parser.push(&chunk)?,
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(err)) => return Err(err.into()),
        }
    }
    Ok((parser.tags, content_type))
}

/// The committed 640x360 clip followed by the 320x180 one (6 s each): the publisher's
/// resolution changes mid-stream, like a WebRTC encoder under congestion.
pub fn clip_with_resolution_change() -> anyhow::Result<Clip> {
    let dir = media_dir();
    let mut clip = Clip::default_360p()?;
    let small = Clip::load(&dir.join("clip-180p.h264"), &dir.join("clip.ogg"), 30)?;
    clip.video.extend(small.video);
    clip.audio.extend(small.audio);
    Ok(clip)
}

/// A real nginx with the RTMP module, on a free port, in its own temp directory.
pub struct NginxRtmp {
    child: Option<tokio::process::Child>,
    dir: PathBuf,
    /// The RTMP port.
    pub port: u16,
}

impl NginxRtmp {
    /// Starts nginx-rtmp (application `live`) on `port` (0 = a free one).
    pub async fn start(port: u16) -> anyhow::Result<NginxRtmp> {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        } else {
            port
        };
        let dir = std::env::temp_dir().join(format!(
            "queqiao-nginx-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(dir.join("logs"))?;
        let module = [
            "/usr/lib/nginx/modules/ngx_rtmp_module.so",
            "/usr/share/nginx/modules/ngx_rtmp_module.so",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("libnginx-mod-rtmp is not installed")?;
        let d = dir.display();
        let conf = format!(
            "load_module {module};\n\
             daemon off;\nmaster_process on;\nworker_processes 1;\n\
             pid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/client_temp;\n  proxy_temp_path {d}/proxy_temp;\n  fastcgi_temp_path {d}/fastcgi_temp;\n  uwsgi_temp_path {d}/uwsgi_temp;\n  scgi_temp_path {d}/scgi_temp;\n}}\n\
             rtmp {{\n  server {{\n    listen 127.0.0.1:{port};\n    chunk_size 4096;\n    application live {{\n      live on;\n      record off;\n    }}\n  }}\n}}\n"
        );
        // The http block only exists so every *_temp_path points inside the temp dir.
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = tokio::process::Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting nginx")?;
        let nginx = NginxRtmp {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!(
                    "nginx-rtmp did not listen on {port}: {}",
                    std::fs::read_to_string(nginx.dir.join("logs/error.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(nginx)
    }

    /// `rtmp://127.0.0.1:PORT/live/{key}`.
    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }

    /// Stops nginx (`kill -QUIT`, then `-TERM`) and waits for it.
    pub async fn stop(mut self) {
        self.quit().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    async fn quit(&mut self) {
        if let Some(mut child) = self.child.take() {
            // QUIT is nginx's graceful stop, but its workers keep serving open RTMP
            // connections; TERM (fast stop) after a grace period closes them.
            for (signal, grace) in [(libc::SIGQUIT, 2), (libc::SIGTERM, 8)] {
                if let Some(pid) = child.id() {
                    // SAFETY: signalling our own child process.
                    unsafe {
                        libc::kill(pid as libc::pid_t, signal);
                    }
                }
                if tokio::time::timeout(Duration::from_secs(grace), child.wait())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            let _ = child.kill().await;
        }
    }
}

impl Drop for NginxRtmp {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Polls `check` every 200 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
