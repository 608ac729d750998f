//! `ApiJson<T>`: the JSON body extractor for the REST API. Every rejection leaves in the
//! project's error shape: 415 without `application/json`, 413 over the limit, 400 for bytes
//! that are not JSON, 422 naming the field for JSON of the wrong shape.

use crate::error::AppError;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

/// Largest JSON body the API reads.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// A JSON request body, see the module docs.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, AppError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(AppError::UnsupportedMediaType {
                expected: "application/json",
            });
        }
        let bytes = crate::routes::read_body(request.into_body(), MAX_JSON_BYTES).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses JSON, mapping syntax errors to 400 and shape errors to 422 with the field path.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => {
                AppError::BadRequest(format!("malformed JSON: {inner}"))
            }
            serde_json::error::Category::Data => {
                let field = if path == "." {
                    field_from_message(&inner.to_string())
                } else {
                    path
                };
                AppError::Validation {
                    field,
                    message: inner.to_string(),
                }
            }
        }
    })
}

/// `missing field `password`` and `unknown field `x`` name the field only in the message.
fn field_from_message(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_else(|| "body".to_owned())
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(Some(Option::deserialize(deserializer)?))
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        age: Option<u32>,
        #[serde(default, deserialize_with = "double_option")]
        city: Option<Option<String>>,
    }

    #[test]
    fn errors_name_the_field() {
        match parse::<Body>(br#"{"name": "a", "age": "x"}"#) {
            Err(AppError::Validation { field, .. }) => assert_eq!(field, "age"),
            other => panic!("{other:?}"),
        }
        match parse::<Body>(br#"{"age": 3}"#) {
            Err(AppError::Validation { field, .. }) => assert_eq!(field, "name"),
            other => panic!("{other:?}"),
        }
        match parse::<Body>(br#"{"name": "a", "bogus": 1}"#) {
            Err(AppError::Validation { field, .. }) => assert_eq!(field, "bogus"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse::<Body>(b"{\"name\": "),
            Err(AppError::BadRequest(_))
        ));
        assert!(matches!(
            parse::<Body>(b"not json"),
            Err(AppError::BadRequest(_))
        ));
        let body: Body = parse(br#"{"name": "a", "city": null}"#).unwrap();
        assert_eq!(body.city, Some(None));
        let body: Body = parse(br#"{"name": "a"}"#).unwrap();
        assert_eq!(body.city, None);
    }
}
