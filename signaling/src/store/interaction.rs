//! Chat, likes, gifts and coins.
//!
//! Money moves in one transaction per operation, keyed by the client's idempotency key:
//! a retried gift or top-up returns the first outcome and is never charged twice, and a
//! wallet's `CHECK (coins >= 0)` plus the conditional debit mean a balance never goes
//! negative. On SQLite the transaction's first statement is a write, so it takes the
//! writer lock up front (waiting under `busy_timeout`) instead of failing on upgrade.

use super::{Store, StoreError, conflict_or, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// An item of the gift catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Gift {
    /// Stable id (`rose`, `ring`, …).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Price of one, in coins.
    pub price_coins: i64,
    /// Key of the client-side animation.
    pub animation: String,
}

/// A user's coins (to spend) and earnings (received as a host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Wallet {
    /// Spendable coins.
    pub coins: i64,
    /// Coins received from gifts.
    pub earnings: i64,
}

/// A gift to send.
#[derive(Debug, Clone)]
pub struct GiftRequest {
    /// Who pays.
    pub sender_id: i64,
    /// The room (its host receives).
    pub room_id: String,
    /// Catalogue id.
    pub gift_id: String,
    /// How many (1–99).
    pub quantity: i64,
    /// The client's key: the same key is charged at most once.
    pub idempotency_key: String,
}

/// A recorded gift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GiftRecord {
    /// Identity.
    pub id: i64,
    /// Who paid.
    pub sender_id: i64,
    /// The room.
    pub room_id: String,
    /// The show that was live, if any.
    pub show_id: Option<i64>,
    /// Who received.
    pub host_id: i64,
    /// Catalogue id.
    pub gift_id: String,
    /// How many.
    pub quantity: i64,
    /// Coins moved.
    pub coins: i64,
    /// The client's key.
    pub idempotency_key: String,
    /// When (ms).
    pub created_at: i64,
}

/// What sending a gift did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiftOutcome {
    /// Charged now; the sender's balance after.
    Sent(GiftRecord, Wallet),
    /// This key was already charged; nothing moved this time.
    Duplicate(GiftRecord, Wallet),
}

/// Why a gift was refused (nothing moved).
#[derive(Debug, thiserror::Error)]
pub enum GiftError {
    /// The sender's balance is below the price.
    #[error("not enough coins: the gift costs {cost}, the balance is {balance}")]
    InsufficientCoins {
        /// Price of the gift.
        cost: i64,
        /// The sender's balance.
        balance: i64,
    },
    /// No such (enabled) gift.
    #[error("unknown gift {0:?}")]
    UnknownGift(String),
    /// The room does not exist or is closed.
    #[error("room not found")]
    RoomNotFound,
    /// The room has no host account to receive gifts (standalone rooms).
    #[error("this room has no host to receive gifts")]
    NoRecipient,
    /// Hosts cannot gift themselves.
    #[error("hosts cannot send gifts to their own room")]
    SelfGift,
    /// The idempotency key was used before for a different gift.
    #[error("idempotency key already used for a different request")]
    KeyReused,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for GiftError {
    fn from(err: sqlx::Error) -> Self {
        GiftError::Store(StoreError::Database(err))
    }
}

/// A chat message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    /// The room.
    pub room_id: String,
    /// Room event sequence number.
    pub seq: i64,
    /// Author.
    pub user_id: i64,
    /// Text.
    pub text: String,
    /// When (ms).
    pub created_at: i64,
}

/// A stored chat message with its author's display fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatWithAuthor {
    /// The message.
    pub record: ChatRecord,
    /// Author's nickname.
    pub nickname: String,
    /// Author's avatar.
    pub avatar_url: Option<String>,
    /// Author's role (so history keeps the host's badge).
    pub role: crate::store::Role,
}

/// One row of a leaderboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Gifter {
    /// User id.
    pub user_id: i64,
    /// Nickname.
    pub nickname: String,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Coins given.
    pub coins: i64,
}

const GIFT_SEND_COLUMNS: &str = "id, sender_id, room_id, show_id, host_id, gift_id, quantity, coins, idempotency_key, created_at";

fn gift_record(row: &AnyRow) -> Result<GiftRecord, StoreError> {
    Ok(GiftRecord {
        id: row.try_get("id")?,
        sender_id: row.try_get("sender_id")?,
        room_id: row.try_get("room_id")?,
        show_id: row.try_get("show_id")?,
        host_id: row.try_get("host_id")?,
        gift_id: row.try_get("gift_id")?,
        quantity: row.try_get("quantity")?,
        coins: row.try_get("coins")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// The enabled gifts, in display order.
    pub async fn gifts(&self) -> Result<Vec<Gift>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT id, name, price_coins, animation FROM gifts WHERE enabled = 1 ORDER BY sort_order, id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Gift {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    price_coins: r.try_get("price_coins")?,
                    animation: r.try_get("animation")?,
                })
            })
            .collect()
    }

    /// A user's wallet (zeros before the first movement).
    pub async fn wallet(&self, user: i64) -> Result<Wallet, StoreError> {
        let row = sqlx::query(&self.sql("SELECT coins, earnings FROM wallets WHERE user_id = $1"))
            .bind(user)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(row) => Wallet {
                coins: row.try_get("coins")?,
                earnings: row.try_get("earnings")?,
            },
            None => Wallet::default(),
        })
    }

    /// Adds coins to a user's wallet (an admin top-up; no payment provider). Returns the
    /// wallet after, and whether this key had been applied before.
    pub async fn top_up(
        &self,
        user: i64,
        amount: i64,
        key: &str,
        admin: Option<i64>,
    ) -> Result<(Wallet, bool), StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(&self.sql("INSERT INTO wallets (user_id, coins, earnings, updated_at) VALUES ($1, 0, 0, $2) ON CONFLICT (user_id) DO NOTHING"))
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| match conflict_or(e, "wallet") {
                StoreError::Database(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => StoreError::NotFound,
                other => other,
            })?;
        let existing = sqlx::query(
            &self.sql("SELECT user_id, amount FROM coin_topups WHERE idempotency_key = $1"),
        )
        .bind(key.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let (u, a): (i64, i64) = (row.try_get("user_id")?, row.try_get("amount")?);
            tx.rollback().await?;
            if u != user || a != amount {
                return Err(StoreError::Conflict(
                    "idempotency key already used for a different top-up".into(),
                ));
            }
            return Ok((self.wallet(user).await?, true));
        }
        sqlx::query(&self.sql("INSERT INTO coin_topups (user_id, amount, idempotency_key, admin_id, created_at) VALUES ($1, $2, $3, $4, $5)"))
            .bind(user)
            .bind(amount)
            .bind(key.to_owned())
            .bind(admin)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "top-up key"))?;
        sqlx::query(
            &self.sql("UPDATE wallets SET coins = coins + $1, updated_at = $2 WHERE user_id = $3"),
        )
        .bind(amount)
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((self.wallet(user).await?, false))
    }

    /// Sends a gift: debits the sender and credits the room's host in one transaction.
    pub async fn send_gift(&self, request: &GiftRequest) -> Result<GiftOutcome, GiftError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // A write first: on SQLite this takes the writer lock now (see the module docs).
        sqlx::query(&self.sql("INSERT INTO wallets (user_id, coins, earnings, updated_at) VALUES ($1, 0, 0, $2) ON CONFLICT (user_id) DO NOTHING"))
            .bind(request.sender_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(existing) = self.find_gift(&mut tx, request).await? {
            tx.rollback().await?;
            return self.duplicate(existing, request).await;
        }
        let room =
            sqlx::query(&self.sql("SELECT host_id FROM rooms WHERE id = $1 AND status = 'open'"))
                .bind(request.room_id.clone())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(GiftError::RoomNotFound)?;
        let host: Option<i64> = room.try_get("host_id").map_err(StoreError::from)?;
        let host = host.ok_or(GiftError::NoRecipient)?;
        if host == request.sender_id {
            return Err(GiftError::SelfGift);
        }
        let price: i64 =
            sqlx::query(&self.sql("SELECT price_coins FROM gifts WHERE id = $1 AND enabled = 1"))
                .bind(request.gift_id.clone())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| GiftError::UnknownGift(request.gift_id.clone()))?
                .try_get("price_coins")
                .map_err(StoreError::from)?;
        let cost = price
            .checked_mul(request.quantity)
            .ok_or_else(|| GiftError::UnknownGift(request.gift_id.clone()))?;
        let debited = sqlx::query(&self.sql("UPDATE wallets SET coins = coins - $1, updated_at = $2 WHERE user_id = $3 AND coins >= $1"))
            .bind(cost)
            .bind(now)
            .bind(request.sender_id)
            .execute(&mut *tx)
            .await?;
        if debited.rows_affected() == 0 {
            let balance: i64 =
                sqlx::query(&self.sql("SELECT coins FROM wallets WHERE user_id = $1"))
                    .bind(request.sender_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("coins")
                    .map_err(StoreError::from)?;
            tx.rollback().await?;
            // A concurrent request with the same key may have been the one that spent the
            // coins (on PostgreSQL our debit waited for its row lock, then saw its balance):
            // then this is a retry of a gift that went through, and gets its answer.
            if let Some(existing) = self.find_gift_outside(request).await? {
                return self.duplicate(existing, request).await;
            }
            return Err(GiftError::InsufficientCoins { cost, balance });
        }
        sqlx::query(&self.sql(
            "INSERT INTO wallets (user_id, coins, earnings, updated_at) VALUES ($1, 0, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET earnings = wallets.earnings + $2, updated_at = $3",
        ))
        .bind(host)
        .bind(cost)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let show: Option<i64> = sqlx::query(&self.sql(
            "SELECT id FROM shows WHERE room_id = $1 AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
        ))
        .bind(request.room_id.clone())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()
        .map_err(StoreError::from)?;
        let sql = format!(
            "INSERT INTO gift_sends (sender_id, idempotency_key, room_id, show_id, host_id, gift_id, quantity, coins, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {GIFT_SEND_COLUMNS}"
        );
        let inserted = sqlx::query(&self.sql(&sql))
            .bind(request.sender_id)
            .bind(request.idempotency_key.clone())
            .bind(request.room_id.clone())
            .bind(show)
            .bind(host)
            .bind(request.gift_id.clone())
            .bind(request.quantity)
            .bind(cost)
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
        let record = match inserted {
            Ok(row) => gift_record(&row)?,
            Err(err) => {
                // A concurrent request with the same key committed first: ours rolls back.
                let _ = tx.rollback().await;
                return match conflict_or(err, "gift key") {
                    StoreError::Conflict(_) => {
                        let existing = self
                            .find_gift_outside(request)
                            .await?
                            .ok_or(GiftError::KeyReused)?;
                        self.duplicate(existing, request).await
                    }
                    other => Err(other.into()),
                };
            }
        };
        tx.commit().await?;
        Ok(GiftOutcome::Sent(
            record,
            self.wallet(request.sender_id).await?,
        ))
    }

    async fn duplicate(
        &self,
        existing: GiftRecord,
        request: &GiftRequest,
    ) -> Result<GiftOutcome, GiftError> {
        if existing.room_id != request.room_id
            || existing.gift_id != request.gift_id
            || existing.quantity != request.quantity
        {
            return Err(GiftError::KeyReused);
        }
        Ok(GiftOutcome::Duplicate(
            existing,
            self.wallet(request.sender_id).await?,
        ))
    }

    async fn find_gift(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        request: &GiftRequest,
    ) -> Result<Option<GiftRecord>, StoreError> {
        let sql = format!(
            "SELECT {GIFT_SEND_COLUMNS} FROM gift_sends WHERE sender_id = $1 AND idempotency_key = $2"
        );
        let row = sqlx::query(&self.sql(&sql))
            .bind(request.sender_id)
            .bind(request.idempotency_key.clone())
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(gift_record).transpose()
    }

    async fn find_gift_outside(
        &self,
        request: &GiftRequest,
    ) -> Result<Option<GiftRecord>, StoreError> {
        let sql = format!(
            "SELECT {GIFT_SEND_COLUMNS} FROM gift_sends WHERE sender_id = $1 AND idempotency_key = $2"
        );
        let row = sqlx::query(&self.sql(&sql))
            .bind(request.sender_id)
            .bind(request.idempotency_key.clone())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(gift_record).transpose()
    }

    /// Top gifters of a room (all shows), or of one show.
    pub async fn leaderboard(
        &self,
        room: &str,
        show: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Gifter>, StoreError> {
        let filter = if show.is_some() {
            "g.show_id = $1"
        } else {
            "g.room_id = $1"
        };
        let sql = format!(
            "SELECT g.sender_id AS user_id, u.nickname, u.avatar_url, CAST(SUM(g.coins) AS BIGINT) AS coins FROM gift_sends g \
             JOIN users u ON u.id = g.sender_id WHERE {filter} GROUP BY g.sender_id, u.nickname, u.avatar_url \
             ORDER BY coins DESC, g.sender_id LIMIT $2"
        );
        let sql = self.sql(&sql);
        let query = match show {
            Some(show) => sqlx::query(&sql).bind(show),
            None => sqlx::query(&sql).bind(room.to_owned()),
        };
        let rows = query.bind(limit).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(Gifter {
                    user_id: r.try_get("user_id")?,
                    nickname: r.try_get("nickname")?,
                    avatar_url: r.try_get("avatar_url")?,
                    coins: r.try_get("coins")?,
                })
            })
            .collect()
    }

    /// Sum of every wallet's coins and earnings (the conservation check of the tests and
    /// of operators' audits).
    pub async fn coins_in_circulation(&self) -> Result<(i64, i64, i64), StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT CAST(COALESCE(SUM(coins), 0) AS BIGINT) AS coins, CAST(COALESCE(SUM(earnings), 0) AS BIGINT) AS earnings, \
             CAST(COALESCE(MIN(coins), 0) AS BIGINT) AS lowest FROM wallets",
        ))
        .fetch_one(self.pool())
        .await?;
        Ok((
            row.try_get("coins")?,
            row.try_get("earnings")?,
            row.try_get("lowest")?,
        ))
    }

    /// Stores chat messages (written behind the broadcast, in batches).
    pub async fn record_chat(&self, messages: &[ChatRecord]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for m in messages {
            sqlx::query(&self.sql(
                "INSERT INTO chat_messages (room_id, seq, user_id, text, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, seq) DO NOTHING",
            ))
            .bind(m.room_id.clone())
            .bind(m.seq)
            .bind(m.user_id)
            .bind(m.text.clone())
            .bind(m.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The latest `limit` chat messages of a room, oldest first, without deleted ones.
    pub async fn chat_history(
        &self,
        room: &str,
        limit: i64,
    ) -> Result<Vec<ChatWithAuthor>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT c.room_id, c.seq, c.user_id, c.text, c.created_at, u.nickname, u.avatar_url, u.role FROM chat_messages c \
             JOIN users u ON u.id = c.user_id WHERE c.room_id = $1 AND c.deleted_at IS NULL ORDER BY c.seq DESC LIMIT $2",
        ))
        .bind(room.to_owned())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(ChatWithAuthor {
                    record: ChatRecord {
                        room_id: r.try_get("room_id")?,
                        seq: r.try_get("seq")?,
                        user_id: r.try_get("user_id")?,
                        text: r.try_get("text")?,
                        created_at: r.try_get("created_at")?,
                    },
                    nickname: r.try_get("nickname")?,
                    avatar_url: r.try_get("avatar_url")?,
                    role: {
                        let role: String = r.try_get("role")?;
                        crate::store::Role::parse(&role)
                            .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    /// Marks a chat message deleted (moderation).
    pub async fn delete_chat(&self, room: &str, seq: i64) -> Result<(), StoreError> {
        sqlx::query(&self.sql("UPDATE chat_messages SET deleted_at = $1 WHERE room_id = $2 AND seq = $3 AND deleted_at IS NULL"))
            .bind(now_ms())
            .bind(room.to_owned())
            .bind(seq)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The room's persisted event position and the likes of its current show (0 between
    /// shows: likes count per show), restored when its hub starts.
    pub async fn room_counters(&self, room: &str) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT r.event_seq, COALESCE((SELECT s.likes FROM shows s WHERE s.room_id = r.id AND s.ended_at IS NULL ORDER BY s.id DESC LIMIT 1), 0) AS likes, \
             (SELECT COALESCE(MAX(seq), 0) FROM chat_messages c WHERE c.room_id = r.id) AS chat_seq FROM rooms r WHERE r.id = $1",
        ))
        .bind(room.to_owned())
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        let event_seq: i64 = row.try_get("event_seq")?;
        let chat_seq: i64 = row.try_get("chat_seq")?;
        Ok((event_seq.max(chat_seq), row.try_get("likes")?))
    }

    /// Persists the room's event position and adds likes to the room and its live show.
    pub async fn save_room_counters(
        &self,
        room: &str,
        event_seq: i64,
        new_likes: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&self.sql(
            "UPDATE rooms SET event_seq = CASE WHEN event_seq < $1 THEN $1 ELSE event_seq END, likes = likes + $2 WHERE id = $3",
        ))
        .bind(event_seq)
        .bind(new_likes)
        .bind(room.to_owned())
        .execute(&mut *tx)
        .await?;
        if new_likes > 0 {
            sqlx::query(&self.sql(
                "UPDATE shows SET likes = likes + $1 WHERE room_id = $2 AND ended_at IS NULL",
            ))
            .bind(new_likes)
            .bind(room.to_owned())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
