//! Taking money for coins: the [`PaymentProvider`] interface and the local
//! [`SandboxProvider`].
//!
//! A recharge is priced from a fixed list of [`RECHARGE_PACKAGES`]; the route asks the
//! provider to charge the package, and only a provider's receipt credits coins (through the
//! ledger, once per idempotency key). The sandbox provider, enabled with
//! `--payment-sandbox`, accepts every charge without moving money — for demos and tests.
//! WeChat Pay and Alipay adapters implement the same trait (see the README): they place
//! the order with the provider and return its transaction id once the payment is confirmed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

/// A recharge package: coins for a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RechargePackage {
    /// Coins credited.
    pub coins: i64,
    /// Price in fen (1/100 yuan).
    pub price_cents: i64,
}

/// The packages offered on the recharge page (10 coins a yuan).
pub const RECHARGE_PACKAGES: [RechargePackage; 6] = [
    RechargePackage {
        coins: 60,
        price_cents: 600,
    },
    RechargePackage {
        coins: 300,
        price_cents: 3_000,
    },
    RechargePackage {
        coins: 980,
        price_cents: 9_800,
    },
    RechargePackage {
        coins: 1_980,
        price_cents: 19_800,
    },
    RechargePackage {
        coins: 5_180,
        price_cents: 51_800,
    },
    RechargePackage {
        coins: 12_980,
        price_cents: 129_800,
    },
];

/// The package worth `coins`, if one is offered.
pub fn package(coins: i64) -> Option<RechargePackage> {
    RECHARGE_PACKAGES.iter().copied().find(|p| p.coins == coins)
}

/// What a provider is asked to charge.
#[derive(Debug, Clone)]
pub struct PaymentOrder {
    /// Who pays.
    pub user_id: i64,
    /// What is bought.
    pub package: RechargePackage,
    /// The client's idempotency key (providers take it as the merchant order number).
    pub idempotency_key: String,
}

/// A charge the provider confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReceipt {
    /// The provider's transaction id (kept in the audit row).
    pub provider_ref: String,
}

/// Why a charge did not go through (nothing is credited).
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// No payment provider is configured on this server.
    #[error("recharging is not available on this server")]
    NotConfigured,
    /// The provider declined the payment.
    #[error("the payment was declined: {0}")]
    Declined(String),
}

/// The future a provider's charge returns.
pub type ChargeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PaymentReceipt, PaymentError>> + Send + 'a>>;

/// A payment provider: charges an order and returns the provider's receipt.
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// The name kept with each order (`sandbox`, `wechat`, `alipay`).
    fn name(&self) -> &'static str;
    /// Charges the order; a receipt means the money was taken.
    fn charge<'a>(&'a self, order: &'a PaymentOrder) -> ChargeFuture<'a>;
}

/// Accepts every charge without moving money (tests and demos only).
#[derive(Debug, Default)]
pub struct SandboxProvider {
    next: AtomicU64,
}

impl SandboxProvider {
    /// A sandbox whose transaction ids start at 1.
    pub const fn new() -> SandboxProvider {
        SandboxProvider {
            next: AtomicU64::new(0),
        }
    }
}

impl PaymentProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn charge<'a>(&'a self, order: &'a PaymentOrder) -> ChargeFuture<'a> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let provider_ref = format!("sandbox-{}-{n}", order.user_id);
        Box::pin(async move { Ok(PaymentReceipt { provider_ref }) })
    }
}

/// Refuses every charge: the provider of a server without one configured.
#[derive(Debug, Default)]
pub struct NoProvider;

impl PaymentProvider for NoProvider {
    fn name(&self) -> &'static str {
        "none"
    }

    fn charge<'a>(&'a self, _order: &'a PaymentOrder) -> ChargeFuture<'a> {
        Box::pin(async { Err(PaymentError::NotConfigured) })
    }
}
