//! Storage: users, rooms, show history and server secrets on sqlx.
//!
//! One set of queries runs on both backends through sqlx's `Any` driver: an embedded
//! SQLite file by default (WAL journal), PostgreSQL when `DATABASE_URL` says so. Queries
//! are written with PostgreSQL's `$1` placeholders and rewritten to SQLite's numbered
//! `?1` form, so the same text is tested on both. Every multi-row change runs in one
//! transaction. Times are Unix milliseconds (`BIGINT`), which both backends store alike.

mod follows;
mod interaction;
mod profile;
mod recordings;
mod rooms;
mod schedule;
mod secrets;
mod shows;
mod stream_keys;
mod uploads;
mod users;
mod wallet;
mod webhooks;

pub use follows::{LiveNotice, UserCard};
pub use interaction::{
    ChatRecord, ChatWithAuthor, Gift, GiftError, GiftOutcome, GiftRecord, GiftRequest, Gifter,
    Wallet,
};
pub use recordings::{Recording, RtmpTargetRow};
pub use rooms::{NewRoom, Room, RoomFilter, RoomPage, RoomUpdate, Visibility};
pub use schedule::ScheduledShow;
pub use shows::Show;
pub use uploads::UploadRecord;
pub use users::{NewUser, ProfileUpdate, Role, User};
pub use wallet::{NewRecharge, RechargeOrder};
pub use webhooks::OutboxEvent;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated (e.g. a taken username).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// The database URL names a backend we do not support.
    #[error("unsupported database URL (use sqlite:… or postgres://…)")]
    UnsupportedUrl,
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value could not be decoded (corrupt row).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The storage handle: a connection pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let options = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10));
        let options = match backend {
            Backend::Sqlite => options.after_connect(|connection, _| {
                Box::pin(async move {
                    connection
                        .execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;")
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let pool = options.connect(url).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    /// The SQLite URL for a file in `data_dir` (created if missing).
    pub fn sqlite_url(data_dir: &std::path::Path) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("queqiao.db").display()
        )
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for transactions spanning several repositories.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN
    /// IMMEDIATE`: a deferred transaction that reads and then writes fails at once with
    /// `SQLITE_BUSY_SNAPSHOT` (which `busy_timeout` does not wait out) when another
    /// connection committed in between, and under a live room's steady writes (viewer
    /// counts, chat) that turned a scheduled show or a reservation into a 500 now and then.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Rewrites `$1`-style placeholders for the backend.
    pub(crate) fn sql<'a>(&self, query: &'a str) -> Cow<'a, str> {
        match self.backend {
            Backend::Postgres => Cow::Borrowed(query),
            Backend::Sqlite => Cow::Owned(query.replace('$', "?")),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Maps unique-constraint violations to [`StoreError::Conflict`].
pub(crate) fn conflict_or(err: sqlx::Error, what: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && (db.is_unique_violation() || db.message().contains("UNIQUE constraint failed"))
    {
        return StoreError::Conflict(what.to_owned());
    }
    StoreError::Database(err)
}

/// Decodes a JSON array of strings stored in a TEXT column.
pub(crate) fn decode_tags(raw: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))
}

/// Encodes tags for a TEXT column.
pub(crate) fn encode_tags(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned())
}
