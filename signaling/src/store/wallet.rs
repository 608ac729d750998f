//! Recharges: coins bought through a payment provider.
//!
//! Each paid order is one row in `recharge_orders` (the audit: provider, its transaction
//! id, coins and price) plus one ledger entry in `coin_topups`, written in the same
//! transaction as the wallet credit. The client's idempotency key is unique per user, so a
//! retried recharge returns the first order and credits nothing more.

use super::{Store, StoreError, Wallet, conflict_or, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A paid recharge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RechargeOrder {
    /// Identity.
    pub id: i64,
    /// Who paid.
    pub user_id: i64,
    /// The payment provider (`sandbox`, `wechat`, `alipay`).
    pub provider: String,
    /// The provider's transaction id.
    pub provider_ref: String,
    /// Coins credited.
    pub coins: i64,
    /// Price paid, in fen.
    pub price_cents: i64,
    /// The client's key.
    pub idempotency_key: String,
    /// When (ms).
    pub created_at: i64,
}

/// A paid order to record.
#[derive(Debug, Clone)]
pub struct NewRecharge<'a> {
    /// Who paid.
    pub user_id: i64,
    /// The provider's name.
    pub provider: &'a str,
    /// The provider's transaction id.
    pub provider_ref: &'a str,
    /// Coins to credit.
    pub coins: i64,
    /// Price paid, in fen.
    pub price_cents: i64,
    /// The client's key.
    pub idempotency_key: &'a str,
}

const ORDER_COLUMNS: &str =
    "id, user_id, provider, provider_ref, coins, price_cents, idempotency_key, created_at";

fn order(row: &AnyRow) -> Result<RechargeOrder, StoreError> {
    Ok(RechargeOrder {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        provider_ref: row.try_get("provider_ref")?,
        coins: row.try_get("coins")?,
        price_cents: row.try_get("price_cents")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// The user's recharge with this key, if any.
    pub async fn recharge_by_key(
        &self,
        user: i64,
        key: &str,
    ) -> Result<Option<RechargeOrder>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM recharge_orders WHERE user_id = $1 AND idempotency_key = $2"
        );
        sqlx::query(&self.sql(&sql))
            .bind(user)
            .bind(key.to_owned())
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(order)
            .transpose()
    }

    /// The user's recharges, newest first.
    pub async fn recharges(&self, user: i64, limit: i64) -> Result<Vec<RechargeOrder>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM recharge_orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
        );
        let rows = sqlx::query(&self.sql(&sql))
            .bind(user)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(order).collect()
    }

    /// Records a paid order and credits its coins, in one transaction. A key already used
    /// by this user returns the first order (`true`: nothing credited this time).
    pub async fn record_recharge(
        &self,
        recharge: &NewRecharge<'_>,
    ) -> Result<(RechargeOrder, Wallet, bool), StoreError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // A write first: on SQLite this takes the writer lock now.
        sqlx::query(&self.sql("INSERT INTO wallets (user_id, coins, earnings, updated_at) VALUES ($1, 0, 0, $2) ON CONFLICT (user_id) DO NOTHING"))
            .bind(recharge.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "INSERT INTO recharge_orders (user_id, provider, provider_ref, coins, price_cents, idempotency_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ORDER_COLUMNS}"
        );
        let inserted = sqlx::query(&self.sql(&sql))
            .bind(recharge.user_id)
            .bind(recharge.provider.to_owned())
            .bind(recharge.provider_ref.to_owned())
            .bind(recharge.coins)
            .bind(recharge.price_cents)
            .bind(recharge.idempotency_key.to_owned())
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
        let recorded = match inserted {
            Ok(row) => order(&row)?,
            Err(err) => {
                let _ = tx.rollback().await;
                return match conflict_or(err, "recharge key") {
                    StoreError::Conflict(_) => {
                        let first = self
                            .recharge_by_key(recharge.user_id, recharge.idempotency_key)
                            .await?
                            .ok_or(StoreError::NotFound)?;
                        Ok((first, self.wallet(recharge.user_id).await?, true))
                    }
                    other => Err(other),
                };
            }
        };
        sqlx::query(&self.sql("INSERT INTO coin_topups (user_id, amount, idempotency_key, admin_id, created_at) VALUES ($1, $2, $3, NULL, $4)"))
            .bind(recharge.user_id)
            .bind(recharge.coins)
            .bind(format!("recharge:{}", recorded.id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            &self.sql("UPDATE wallets SET coins = coins + $1, updated_at = $2 WHERE user_id = $3"),
        )
        .bind(recharge.coins)
        .bind(now)
        .bind(recharge.user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((recorded, self.wallet(recharge.user_id).await?, false))
    }
}
