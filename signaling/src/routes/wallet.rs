//! Buying coins: the recharge packages, a recharge through the configured payment
//! provider (see [`crate::payment`]) and the user's recharge history.

use crate::api_json::ApiJson;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::payment::{
    NoProvider, PaymentOrder, PaymentProvider, RECHARGE_PACKAGES, RechargePackage, SandboxProvider,
    package,
};
use crate::state::AppState;
use crate::store::{NewRecharge, RechargeOrder, Wallet};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

static SANDBOX: SandboxProvider = SandboxProvider::new();
static NO_PROVIDER: NoProvider = NoProvider;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/wallet/packages", get(packages))
        .route("/api/me/recharges", get(recharges).post(recharge))
}

/// The provider recharges go through on this server.
fn provider(state: &AppState) -> &'static dyn PaymentProvider {
    if state.config.payment_sandbox {
        &SANDBOX
    } else {
        &NO_PROVIDER
    }
}

/// What can be bought, and whether recharging is available.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PackagesResponse {
    /// The packages, cheapest first.
    pub packages: Vec<RechargePackage>,
    /// The payment provider's name (`none` when recharging is not available).
    pub provider: &'static str,
}

/// A recharge to buy.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RechargeRequest {
    /// Coins of one of the offered packages.
    pub coins: i64,
    /// Paid and credited at most once per key.
    pub idempotency_key: String,
}

/// A recharge's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RechargeResponse {
    /// The paid order.
    pub order: RechargeOrder,
    /// The wallet after.
    pub wallet: Wallet,
    /// Whether this key had been paid before (nothing charged or credited this time).
    pub duplicate: bool,
}

async fn packages(State(state): State<AppState>) -> Json<PackagesResponse> {
    Json(PackagesResponse {
        packages: RECHARGE_PACKAGES.to_vec(),
        provider: provider(&state).name(),
    })
}

async fn recharges(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Vec<RechargeOrder>>, AppError> {
    Ok(Json(state.store.recharges(user.id, 50).await?))
}

async fn recharge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<RechargeRequest>,
) -> Result<Json<RechargeResponse>, AppError> {
    let package = package(body.coins)
        .ok_or_else(|| AppError::invalid("coins", "must be one of the offered packages"))?;
    if body.idempotency_key.is_empty() || body.idempotency_key.len() > 64 {
        return Err(AppError::invalid(
            "idempotency_key",
            "must be 1–64 characters",
        ));
    }
    if let Some(first) = state
        .store
        .recharge_by_key(user.id, &body.idempotency_key)
        .await?
    {
        if first.coins != package.coins {
            return Err(AppError::Conflict(
                "idempotency key already used for a different recharge".into(),
            ));
        }
        let wallet = state.store.wallet(user.id).await?;
        return Ok(Json(RechargeResponse {
            order: first,
            wallet,
            duplicate: true,
        }));
    }
    let provider = provider(&state);
    let order = PaymentOrder {
        user_id: user.id,
        package,
        idempotency_key: body.idempotency_key.clone(),
    };
    let receipt = provider.charge(&order).await?;
    let (order, wallet, duplicate) = state
        .store
        .record_recharge(&NewRecharge {
            user_id: user.id,
            provider: provider.name(),
            provider_ref: &receipt.provider_ref,
            coins: package.coins,
            price_cents: package.price_cents,
            idempotency_key: &body.idempotency_key,
        })
        .await?;
    tracing::info!(
        user = user.id,
        coins = package.coins,
        provider = provider.name(),
        provider_ref = %receipt.provider_ref,
        duplicate,
        "recharge"
    );
    Ok(Json(RechargeResponse {
        order,
        wallet,
        duplicate,
    }))
}
