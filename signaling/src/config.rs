//! Server configuration: defaults, then a TOML file, then `QUEQIAO_*` environment
//! variables, then command-line flags (each later source wins).

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Command line of the `queqiao` binary.
#[derive(Debug, Parser)]
#[command(
    name = "queqiao",
    version,
    about = "Queqiao (鹊桥) live-streaming server"
)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the server (the default).
    Serve,
    /// Print the effective configuration as TOML and exit.
    PrintConfig,
    /// Administration from the command line.
    Admin {
        /// What to do.
        #[command(subcommand)]
        action: AdminAction,
    },
}

/// `queqiao admin …`
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create an administrator account (the first admin is made this way). The password
    /// is read from standard input, or from `QUEQIAO_ADMIN_PASSWORD`.
    Create {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Display name (default: the username).
        #[arg(long)]
        nickname: Option<String>,
    },
    /// Give an existing user the host role.
    GrantHost {
        /// Login name or phone.
        #[arg(long)]
        login: String,
    },
}

/// Settings that may come from flags or the environment (each flag `--foo-bar` is also
/// `QUEQIAO_FOO_BAR`).
#[derive(Debug, Args, Default)]
pub struct SettingsArgs {
    /// TOML configuration file.
    #[arg(long, env = "QUEQIAO_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "QUEQIAO_HTTP", global = true)]
    pub http: Option<SocketAddr>,
    /// UDP address for all WebRTC media [default: 127.0.0.1:3478].
    #[arg(long, env = "QUEQIAO_UDP", global = true)]
    pub udp: Option<SocketAddr>,
    /// IP advertised in ICE candidates (the public address behind NAT).
    #[arg(long, env = "QUEQIAO_PUBLIC_IP", global = true)]
    pub public_ip: Option<IpAddr>,
    /// Directory for the database, recordings and keys [default: ./data].
    #[arg(long, env = "QUEQIAO_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Bearer token that allows publishing (WHIP). Generated and logged at start when unset.
    #[arg(
        long,
        env = "QUEQIAO_PUBLISH_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub publish_token: Option<String>,
    /// STUN/TURN URLs offered to clients in `Link: rel="ice-server"` (repeatable,
    /// comma-separated in the environment).
    #[arg(
        long = "ice-server",
        env = "QUEQIAO_ICE_SERVERS",
        value_delimiter = ',',
        global = true
    )]
    pub ice_servers: Option<Vec<String>>,
    /// Directory to serve the web demo from instead of the copy built into the binary.
    #[arg(long, env = "QUEQIAO_WEB_DIR", global = true)]
    pub web_dir: Option<PathBuf>,
    /// Most concurrent WebRTC sessions [default: 5000].
    #[arg(long, env = "QUEQIAO_MAX_PEERS", global = true)]
    pub max_peers: Option<usize>,
    /// Media shards: threads, each with its own socket on the one UDP port; a room's
    /// viewers spread over all of them [default: the available cores].
    #[arg(long, env = "QUEQIAO_MEDIA_THREADS", global = true)]
    pub media_threads: Option<usize>,
    /// Database URL: `sqlite://path?mode=rwc` or `postgres://…` [default: SQLite in the data dir].
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Standalone mode: publishing takes the publish token instead of a host account, and
    /// publishing to an unknown room creates it.
    #[arg(long, env = "QUEQIAO_STANDALONE", global = true)]
    pub standalone: bool,
    /// Let anonymous visitors watch public rooms [default: true].
    #[arg(long, env = "QUEQIAO_ANONYMOUS_VIEWERS", global = true)]
    pub anonymous_viewers: Option<bool>,
    /// Public base URL for playback links (e.g. https://live.example.com) [default: from the request's Host].
    #[arg(long, env = "QUEQIAO_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// RTMP ingest listen address (OBS, ffmpeg, WeChat live-pusher push
    /// `rtmp://HOST/live/{room}?key=…`), or `off` [default: 127.0.0.1:1935].
    #[arg(long, env = "QUEQIAO_RTMP", global = true)]
    pub rtmp: Option<RtmpListen>,
    /// The RTMP server URL handed to hosts, when the listen address is not what encoders
    /// reach (NAT, a load balancer), e.g. `rtmp://live.example.com/live` [default: the
    /// request's host and the RTMP port].
    #[arg(long, env = "QUEQIAO_RTMP_PUBLIC_URL", global = true)]
    pub rtmp_public_url: Option<String>,
    /// RTMP push targets, `ROOM=rtmp://host/app/key` (repeatable, comma-separated in the
    /// environment); `*=rtmp://host/app/{room}` pushes every room.
    #[arg(
        long = "rtmp-push",
        env = "QUEQIAO_RTMP_PUSH",
        value_delimiter = ',',
        global = true
    )]
    pub rtmp_push: Option<Vec<String>>,
    /// Record every show as HLS VOD under the data directory [default: true].
    #[arg(long, env = "QUEQIAO_RECORD", global = true)]
    pub record: Option<bool>,
    /// Words refused in chat (repeatable; comma-separated in the environment).
    #[arg(
        long = "blocked-word",
        env = "QUEQIAO_BLOCKED_WORDS",
        value_delimiter = ',',
        global = true
    )]
    pub blocked_words: Option<Vec<String>>,
    /// On a fresh database, create a demo admin, a demo host and a demo room, and print
    /// their passwords once (for trying the product out; never for production).
    #[arg(long, env = "QUEQIAO_SEED_DEMO", global = true)]
    pub seed_demo: bool,
    /// Client addresses (CIDRs) exempt from the per-address limits, e.g. a load
    /// generator or a monitoring host (comma-separated in the environment).
    #[arg(
        long = "limits-exempt",
        env = "QUEQIAO_LIMITS_EXEMPT",
        value_delimiter = ',',
        global = true
    )]
    pub limits_exempt: Option<Vec<String>>,
    /// Take recharges through the local sandbox payment provider, which credits coins
    /// without charging anyone (for trying the product out and tests; never production).
    #[arg(long, env = "QUEQIAO_PAYMENT_SANDBOX", global = true)]
    pub payment_sandbox: bool,
}

/// The TOML file's shape: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    http: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    public_ip: Option<IpAddr>,
    data_dir: Option<PathBuf>,
    publish_token: Option<String>,
    ice_servers: Option<Vec<String>>,
    web_dir: Option<PathBuf>,
    max_peers: Option<usize>,
    media_threads: Option<usize>,
    connect_timeout_secs: Option<f64>,
    silence_timeout_secs: Option<f64>,
    publisher_stale_secs: Option<f64>,
    room_idle_timeout_secs: Option<f64>,
    database_url: Option<String>,
    standalone: Option<bool>,
    anonymous_viewers: Option<bool>,
    public_url: Option<String>,
    rtmp_push: Option<Vec<String>>,
    rtmp: Option<RtmpListen>,
    rtmp_public_url: Option<String>,
    record: Option<bool>,
    token_ttl_secs: Option<u64>,
    login_attempts_per_minute_per_ip: Option<u32>,
    login_attempts_per_minute_per_account: Option<u32>,
    blocked_words: Option<Vec<String>>,
    chat_messages_per_second: Option<u32>,
    access: Option<crate::access::AccessSettings>,
    chat_burst: Option<u32>,
    like_messages_per_second: Option<u32>,
    like_burst: Option<u32>,
    gifts_per_second: Option<u32>,
    gift_burst: Option<u32>,
    restream_allow: Option<Vec<String>>,
    trusted_proxies: Option<Vec<String>>,
    limits_exempt: Option<Vec<String>>,
    http_header_timeout_secs: Option<f64>,
    http_body_timeout_secs: Option<f64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    whep_sessions_per_minute_per_ip: Option<u32>,
    whep_session_burst_per_ip: Option<u32>,
    max_webrtc_sessions_per_ip: Option<usize>,
    max_websockets_per_ip: Option<usize>,
    max_websockets_per_user: Option<usize>,
    registrations_per_hour_per_ip: Option<u32>,
    uploads_per_hour_per_user: Option<u32>,
    orphan_upload_grace_hours: Option<u64>,
    max_concurrent_password_hashes: Option<usize>,
    recordings_max_age_days: Option<u64>,
    recordings_max_total_bytes: Option<u64>,
    recordings_min_free_bytes: Option<u64>,
    payment_sandbox: Option<bool>,
    webhooks: Option<crate::webhooks::WebhookSettings>,
}

/// The effective configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// UDP media address.
    pub udp: SocketAddr,
    /// Advertised IP, if set.
    pub public_ip: Option<IpAddr>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Publishing token (`None` only in tests that disable publishing auth explicitly).
    #[serde(skip_serializing)]
    pub publish_token: Option<String>,
    /// ICE servers offered to clients.
    pub ice_servers: Vec<String>,
    /// Web demo directory override.
    pub web_dir: Option<PathBuf>,
    /// Peer limit.
    pub max_peers: usize,
    /// Media shards (threads with a socket each on the UDP port).
    pub media_threads: usize,
    /// Seconds a new session may take to connect (ICE + DTLS) before it is dropped.
    pub connect_timeout_secs: f64,
    /// Seconds a connected session may stay silent before it is dropped.
    pub silence_timeout_secs: f64,
    /// Seconds without media after which a publisher may be replaced by a new one.
    pub publisher_stale_secs: f64,
    /// Seconds an empty room is kept (so a reconnecting publisher finds its viewers).
    pub room_idle_timeout_secs: f64,
    /// Database URL (`None`: SQLite file in the data directory).
    #[serde(skip_serializing)]
    pub database_url: Option<String>,
    /// Standalone mode (publish token instead of host accounts).
    pub standalone: bool,
    /// Anonymous visitors may watch public rooms.
    pub anonymous_viewers: bool,
    /// Public base URL for playback links.
    pub public_url: Option<String>,
    /// RTMP push targets (`ROOM=URL`, `*=URL` with `{room}`).
    pub rtmp_push: Vec<String>,
    /// RTMP ingest: where to listen, or off.
    pub rtmp: RtmpListen,
    /// The RTMP server URL handed to hosts, if not derived from the request.
    pub rtmp_public_url: Option<String>,
    /// Record every show (HLS VOD in `data_dir/recordings`).
    pub record: bool,
    /// Access token lifetime in seconds.
    pub token_ttl_secs: u64,
    /// Login attempts allowed per minute from one address.
    pub login_attempts_per_minute_per_ip: u32,
    /// Login attempts allowed per minute for one account name.
    pub login_attempts_per_minute_per_account: u32,
    /// Words refused in chat (case-insensitive).
    pub blocked_words: Vec<String>,
    /// Chat messages per user per second (sustained) and burst.
    pub chat_rate: (u32, u32),
    /// Like messages per user per second and burst.
    pub like_rate: (u32, u32),
    /// Gifts per user per second and burst.
    pub gift_rate: (u32, u32),
    /// Access policy settings (`[access]`: TURN secret, playback token lifetime, …).
    pub access: crate::access::AccessSettings,
    /// Private addresses RTMP pushes may reach anyway (CIDRs or host names); public
    /// addresses are always allowed.
    pub restream_allow: Vec<String>,
    /// Reverse proxies (CIDRs) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Client addresses (CIDRs) exempt from the per-address limits.
    pub limits_exempt: Vec<String>,
    /// Seconds a client has to send a request's headers; also how long an idle
    /// keep-alive connection is kept waiting for its next request.
    pub http_header_timeout_secs: f64,
    /// Seconds a client has to send a request's body once its headers arrived (a slow
    /// upload is answered 408 and its connection closed).
    pub http_body_timeout_secs: f64,
    /// Most open HTTP connections (WebSockets and media streams included).
    pub max_connections: usize,
    /// Most open HTTP connections from one address.
    pub max_connections_per_ip: usize,
    /// WHEP sessions one address may start per minute (sustained).
    pub whep_sessions_per_minute_per_ip: u32,
    /// WHEP sessions one address may start at once before the rate applies.
    pub whep_session_burst_per_ip: u32,
    /// Most concurrent WHEP sessions of one address.
    pub max_webrtc_sessions_per_ip: usize,
    /// Most concurrent room WebSockets of one address.
    pub max_websockets_per_ip: usize,
    /// Most concurrent room WebSockets of one account.
    pub max_websockets_per_user: usize,
    /// Accounts one address may register per hour.
    pub registrations_per_hour_per_ip: u32,
    /// Images one account may upload per hour (a burst of a fifth of it at once); more
    /// get 429 with `Retry-After`. Each upload costs a decode and a file.
    pub uploads_per_hour_per_user: u32,
    /// Uploaded images that no avatar, profile photo or room cover uses are deleted
    /// once they are this many hours old (0: kept forever).
    pub orphan_upload_grace_hours: u64,
    /// Password hashes (argon2, ~19 MiB each) computed at once; more wait briefly, then
    /// get 503 with `Retry-After`.
    pub max_concurrent_password_hashes: usize,
    /// Recordings older than this many days are deleted (0: kept forever).
    pub recordings_max_age_days: u64,
    /// The oldest recordings are deleted while all of them take more bytes (0: no cap).
    pub recordings_max_total_bytes: u64,
    /// A new recording is refused while the data directory's disk has less free space.
    pub recordings_min_free_bytes: u64,
    /// Recharges go through the sandbox payment provider (no real money; tests, demos).
    pub payment_sandbox: bool,
    /// Operator webhooks (`[webhooks]`: url, secret, retries).
    pub webhooks: crate::webhooks::WebhookSettings,
}

impl Config {
    /// The interaction part of the configuration.
    pub fn interaction_config(&self) -> crate::interaction::InteractionConfig {
        crate::interaction::InteractionConfig {
            blocked_words: self.blocked_words.clone(),
            chat_rate: self.chat_rate,
            like_rate: self.like_rate,
            gift_rate: self.gift_rate,
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| crate::store::Store::sqlite_url(&self.data_dir))
    }

    /// The media-plane part of the configuration.
    pub fn sfu_config(&self) -> sfu::SfuConfig {
        let secs = |value: f64| std::time::Duration::from_secs_f64(value.clamp(0.1, 86_400.0));
        sfu::SfuConfig {
            udp_bind: self.udp,
            public_ip: self.public_ip,
            max_peers: self.max_peers,
            media_threads: self.media_threads,
            connect_timeout: secs(self.connect_timeout_secs),
            silence_timeout: secs(self.silence_timeout_secs),
            publisher_stale_after: secs(self.publisher_stale_secs),
            room_idle_timeout: secs(self.room_idle_timeout_secs),
            ..sfu::SfuConfig::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            udp: SocketAddr::from(([127, 0, 0, 1], 3478)),
            public_ip: None,
            data_dir: PathBuf::from("data"),
            publish_token: None,
            ice_servers: Vec::new(),
            web_dir: None,
            max_peers: 5000,
            media_threads: std::thread::available_parallelism().map_or(1, usize::from),
            connect_timeout_secs: 10.0,
            silence_timeout_secs: 15.0,
            publisher_stale_secs: 3.0,
            room_idle_timeout_secs: 30.0,
            database_url: None,
            standalone: false,
            anonymous_viewers: true,
            public_url: None,
            rtmp_push: Vec::new(),
            rtmp: RtmpListen::Default,
            rtmp_public_url: None,
            record: true,
            token_ttl_secs: 24 * 3600,
            login_attempts_per_minute_per_ip: 30,
            login_attempts_per_minute_per_account: 10,
            blocked_words: Vec::new(),
            chat_rate: (2, 5),
            like_rate: (20, 40),
            gift_rate: (10, 20),
            access: crate::access::AccessSettings::default(),
            restream_allow: Vec::new(),
            trusted_proxies: Vec::new(),
            limits_exempt: Vec::new(),
            http_header_timeout_secs: 10.0,
            http_body_timeout_secs: 30.0,
            max_connections: 10_000,
            max_connections_per_ip: 64,
            whep_sessions_per_minute_per_ip: 30,
            whep_session_burst_per_ip: 10,
            max_webrtc_sessions_per_ip: 10,
            max_websockets_per_ip: 20,
            max_websockets_per_user: 5,
            registrations_per_hour_per_ip: 10,
            uploads_per_hour_per_user: 60,
            orphan_upload_grace_hours: 24,
            max_concurrent_password_hashes: 4,
            recordings_max_age_days: 0,
            recordings_max_total_bytes: 0,
            recordings_min_free_bytes: 256 * 1024 * 1024,
            payment_sandbox: false,
            webhooks: crate::webhooks::WebhookSettings::default(),
        }
    }
}

/// Where the RTMP ingest listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtmpListen {
    /// The default address (127.0.0.1:1935); if it is taken, the server runs without
    /// RTMP ingest and says so in the log (a second server on one machine).
    #[default]
    Default,
    /// This address; failing to bind it fails the start.
    At(SocketAddr),
    /// No RTMP ingest.
    Off,
}

impl RtmpListen {
    /// The default listen address.
    pub const DEFAULT_ADDR: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1935);
}

impl std::str::FromStr for RtmpListen {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "off" | "false" | "none" | "" => Ok(RtmpListen::Off),
            other => other
                .parse()
                .map(RtmpListen::At)
                .map_err(|_| format!("{other:?} is neither an address (HOST:PORT) nor `off`")),
        }
    }
}

impl<'de> Deserialize<'de> for RtmpListen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for RtmpListen {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RtmpListen::Default => serializer.serialize_str(&Self::DEFAULT_ADDR.to_string()),
            RtmpListen::At(addr) => serializer.serialize_str(&addr.to_string()),
            RtmpListen::Off => serializer.serialize_str("off"),
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
}

impl Config {
    /// Merges defaults, the file named by `--config`, and flags/environment.
    pub fn load(args: &SettingsArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let defaults = Config::default();
        Ok(Config {
            http: args.http.or(file.http).unwrap_or(defaults.http),
            udp: args.udp.or(file.udp).unwrap_or(defaults.udp),
            public_ip: args.public_ip.or(file.public_ip),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(defaults.data_dir),
            publish_token: args
                .publish_token
                .clone()
                .or(file.publish_token)
                .filter(|t| !t.is_empty()),
            ice_servers: args
                .ice_servers
                .clone()
                .or(file.ice_servers)
                .unwrap_or_default(),
            web_dir: args.web_dir.clone().or(file.web_dir),
            max_peers: args
                .max_peers
                .or(file.max_peers)
                .unwrap_or(defaults.max_peers),
            media_threads: args
                .media_threads
                .or(file.media_threads)
                .unwrap_or(defaults.media_threads)
                .clamp(1, sfu::cross_shard::MAX_SHARDS),
            connect_timeout_secs: file
                .connect_timeout_secs
                .unwrap_or(defaults.connect_timeout_secs),
            silence_timeout_secs: file
                .silence_timeout_secs
                .unwrap_or(defaults.silence_timeout_secs),
            publisher_stale_secs: file
                .publisher_stale_secs
                .unwrap_or(defaults.publisher_stale_secs),
            room_idle_timeout_secs: file
                .room_idle_timeout_secs
                .unwrap_or(defaults.room_idle_timeout_secs),
            database_url: args
                .database_url
                .clone()
                .or(file.database_url)
                .filter(|u| !u.is_empty()),
            standalone: args.standalone || file.standalone.unwrap_or(false),
            anonymous_viewers: args
                .anonymous_viewers
                .or(file.anonymous_viewers)
                .unwrap_or(defaults.anonymous_viewers),
            public_url: args
                .public_url
                .clone()
                .or(file.public_url)
                .map(|u| u.trim_end_matches('/').to_owned()),
            rtmp_push: args
                .rtmp_push
                .clone()
                .or(file.rtmp_push)
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            rtmp: args.rtmp.or(file.rtmp).unwrap_or(defaults.rtmp),
            rtmp_public_url: args
                .rtmp_public_url
                .clone()
                .or(file.rtmp_public_url)
                .map(|u| u.trim_end_matches('/').to_owned()),
            record: args.record.or(file.record).unwrap_or(defaults.record),
            token_ttl_secs: file.token_ttl_secs.unwrap_or(defaults.token_ttl_secs),
            login_attempts_per_minute_per_ip: file
                .login_attempts_per_minute_per_ip
                .unwrap_or(defaults.login_attempts_per_minute_per_ip),
            login_attempts_per_minute_per_account: file
                .login_attempts_per_minute_per_account
                .unwrap_or(defaults.login_attempts_per_minute_per_account),
            blocked_words: args
                .blocked_words
                .clone()
                .or(file.blocked_words)
                .unwrap_or_default()
                .into_iter()
                .map(|w| w.trim().to_owned())
                .filter(|w| !w.is_empty())
                .collect(),
            chat_rate: (
                file.chat_messages_per_second
                    .unwrap_or(defaults.chat_rate.0),
                file.chat_burst.unwrap_or(defaults.chat_rate.1),
            ),
            like_rate: (
                file.like_messages_per_second
                    .unwrap_or(defaults.like_rate.0),
                file.like_burst.unwrap_or(defaults.like_rate.1),
            ),
            gift_rate: (
                file.gifts_per_second.unwrap_or(defaults.gift_rate.0),
                file.gift_burst.unwrap_or(defaults.gift_rate.1),
            ),
            access: file.access.unwrap_or_default(),
            restream_allow: file.restream_allow.unwrap_or_default(),
            trusted_proxies: file.trusted_proxies.unwrap_or_default(),
            limits_exempt: args
                .limits_exempt
                .clone()
                .or(file.limits_exempt)
                .unwrap_or_default(),
            http_header_timeout_secs: file
                .http_header_timeout_secs
                .unwrap_or(defaults.http_header_timeout_secs),
            http_body_timeout_secs: file
                .http_body_timeout_secs
                .unwrap_or(defaults.http_body_timeout_secs),
            max_connections: file.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_ip: file
                .max_connections_per_ip
                .unwrap_or(defaults.max_connections_per_ip),
            whep_sessions_per_minute_per_ip: file
                .whep_sessions_per_minute_per_ip
                .unwrap_or(defaults.whep_sessions_per_minute_per_ip),
            whep_session_burst_per_ip: file
                .whep_session_burst_per_ip
                .unwrap_or(defaults.whep_session_burst_per_ip),
            max_webrtc_sessions_per_ip: file
                .max_webrtc_sessions_per_ip
                .unwrap_or(defaults.max_webrtc_sessions_per_ip),
            max_websockets_per_ip: file
                .max_websockets_per_ip
                .unwrap_or(defaults.max_websockets_per_ip),
            max_websockets_per_user: file
                .max_websockets_per_user
                .unwrap_or(defaults.max_websockets_per_user),
            registrations_per_hour_per_ip: file
                .registrations_per_hour_per_ip
                .unwrap_or(defaults.registrations_per_hour_per_ip),
            uploads_per_hour_per_user: file
                .uploads_per_hour_per_user
                .unwrap_or(defaults.uploads_per_hour_per_user),
            orphan_upload_grace_hours: file
                .orphan_upload_grace_hours
                .unwrap_or(defaults.orphan_upload_grace_hours),
            max_concurrent_password_hashes: file
                .max_concurrent_password_hashes
                .unwrap_or(defaults.max_concurrent_password_hashes),
            recordings_max_age_days: file
                .recordings_max_age_days
                .unwrap_or(defaults.recordings_max_age_days),
            recordings_max_total_bytes: file
                .recordings_max_total_bytes
                .unwrap_or(defaults.recordings_max_total_bytes),
            recordings_min_free_bytes: file
                .recordings_min_free_bytes
                .unwrap_or(defaults.recordings_min_free_bytes),
            payment_sandbox: args.payment_sandbox
                || file.payment_sandbox.unwrap_or(defaults.payment_sandbox),
            webhooks: file.webhooks.unwrap_or(defaults.webhooks),
        })
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = std::env::temp_dir().join(format!("queqiao-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("q.toml");
        std::fs::write(
            &file,
            "http = \"0.0.0.0:9000\"\nudp = \"0.0.0.0:4000\"\nice_servers = [\"stun:a\"]\n",
        )
        .unwrap();
        let args = SettingsArgs {
            config: Some(file.clone()),
            udp: Some("127.0.0.1:5000".parse().unwrap()),
            ..Default::default()
        };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.http, "0.0.0.0:9000".parse::<SocketAddr>().unwrap());
        assert_eq!(config.udp, "127.0.0.1:5000".parse::<SocketAddr>().unwrap());
        assert_eq!(config.ice_servers, vec!["stun:a"]);
        assert_eq!(config.max_peers, 5000);
        std::fs::write(&file, "htp = 1").unwrap();
        assert!(matches!(
            Config::load(&args),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn environment_names_follow_the_flag() {
        let cli = Cli::try_parse_from([
            "queqiao",
            "--http",
            "127.0.0.1:1",
            "--ice-server",
            "stun:x",
            "--ice-server",
            "turn:y",
        ])
        .unwrap();
        assert_eq!(
            cli.settings.http,
            Some("127.0.0.1:1".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(cli.settings.ice_servers.unwrap(), vec!["stun:x", "turn:y"]);
    }
}
