//! The one place HTTP statuses are decided: every error becomes
//! `{"error":{"code":"…","message":"…"}}` with the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sfu::SfuError;
use sfu::offer::OfferError;

/// Errors a request can end in.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No or malformed credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request body has the wrong media type.
    #[error("expected Content-Type: {expected}")]
    UnsupportedMediaType {
        /// The type the endpoint takes.
        expected: &'static str,
    },
    /// The request body exceeds the limit.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request is well formed but cannot be processed (e.g. no usable codec).
    #[error("{0}")]
    Unprocessable(String),
    /// A field failed validation.
    #[error("{field}: {message}")]
    Validation {
        /// The JSON field (dotted path) at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Too many attempts; try again later.
    #[error("too many requests; retry in {retry_after_secs} s")]
    TooManyRequests {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. a second publisher).
    #[error("{0}")]
    Conflict(String),
    /// An `If-Match` precondition failed.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The method is not supported on this resource.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The server is at capacity or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
    /// Expensive work (password hashing) is saturated; retry shortly.
    #[error("the server is busy; retry in {retry_after_secs} s")]
    Busy {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// Sign-up: the username or phone number belongs to another account.
    #[error("that username or phone number is already registered")]
    AccountTaken,
    /// Log-in: unknown account or wrong password (deliberately not told apart).
    #[error("wrong username/phone or password")]
    WrongCredentials,
    /// The payment provider declined a recharge (nothing was credited).
    #[error("{0}")]
    PaymentDeclined(String),
    /// An uploaded image does not decode.
    #[error("{0}")]
    BadImage(String),
    /// An uploaded image's dimensions or decoded size exceed the limits.
    #[error("{0}")]
    ImageTooLarge(String),
}

impl AppError {
    /// HTTP status and stable machine-readable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AppError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            AppError::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            AppError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            AppError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            AppError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            AppError::AccountTaken => (StatusCode::CONFLICT, "username_taken"),
            AppError::WrongCredentials => (StatusCode::UNAUTHORIZED, "wrong_password"),
            AppError::PaymentDeclined(_) => (StatusCode::PAYMENT_REQUIRED, "payment_declined"),
            AppError::BadImage(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad_image"),
            AppError::ImageTooLarge(_) => (StatusCode::UNPROCESSABLE_ENTITY, "image_too_large"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let AppError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let mut body =
            serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        if let AppError::Validation { field, .. } = &self {
            body["error"]["field"] = serde_json::Value::String(field.clone());
        }
        let mut response = (status, axum::Json(body)).into_response();
        match &self {
            AppError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::TooManyRequests { retry_after_secs }
            | AppError::Busy { retry_after_secs } => {
                if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}

impl AppError {
    /// A validation failure of `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> AppError {
        AppError::Validation {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            StoreError::Conflict(what) => AppError::Conflict(what),
            StoreError::NotFound => AppError::NotFound("not found".into()),
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// The one JSON error document every failure uses (for the OpenAPI description).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Inside [`ErrorBody`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`unauthorized`, `validation`, `not_found`, …).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// For `validation`: the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<SfuError> for AppError {
    fn from(err: SfuError) -> Self {
        match err {
            SfuError::Offer(OfferError::TooLarge(_)) => AppError::PayloadTooLarge {
                limit: sfu::offer::MAX_OFFER_BYTES,
            },
            SfuError::Offer(OfferError::Malformed(_)) => AppError::BadRequest(err.to_string()),
            SfuError::Offer(OfferError::NoUsableCodec(_)) => {
                AppError::Unprocessable(err.to_string())
            }
            SfuError::RoomNotFound(_) | SfuError::SessionNotFound => {
                AppError::NotFound(err.to_string())
            }
            SfuError::PublisherConflict(_) | SfuError::CodecConflict { .. } => {
                AppError::Conflict(err.to_string())
            }
            SfuError::Capacity(_) | SfuError::ShuttingDown => {
                AppError::Unavailable(err.to_string())
            }
            SfuError::Engine(_) | SfuError::Io(_) => AppError::Internal(err.to_string()),
        }
    }
}

impl From<crate::payment::PaymentError> for AppError {
    fn from(err: crate::payment::PaymentError) -> Self {
        use crate::payment::PaymentError;
        match err {
            PaymentError::NotConfigured => AppError::Unavailable(err.to_string()),
            PaymentError::Declined(_) => AppError::PaymentDeclined(err.to_string()),
        }
    }
}

impl From<crate::images::ImageError> for AppError {
    fn from(err: crate::images::ImageError) -> Self {
        use crate::images::ImageError;
        match err {
            ImageError::UnsupportedType => AppError::UnsupportedMediaType {
                expected: "image/jpeg, image/png or image/webp (checked from the bytes)",
            },
            ImageError::TooLarge(_) => AppError::ImageTooLarge(err.to_string()),
            ImageError::Malformed(_) => AppError::BadImage(err.to_string()),
        }
    }
}
