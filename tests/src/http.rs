//! A small HTTP client for WHIP/WHEP and the REST API.

use anyhow::Context;
use reqwest::header;

/// The result of posting an SDP offer.
#[derive(Debug, Clone)]
pub struct SdpExchange {
    /// HTTP status.
    pub status: u16,
    /// The answer (or the JSON error body).
    pub body: String,
    /// `Location` header.
    pub location: Option<String>,
    /// `ETag` header.
    pub etag: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// All `Link` headers.
    pub links: Vec<String>,
}

/// Thin wrapper over `reqwest::Client`.
#[derive(Clone, Default)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// A client without proxies (tests talk to loopback).
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self { client }
    }

    /// The underlying client.
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// POSTs `application/sdp`.
    pub async fn post_sdp(
        &self,
        url: &str,
        token: Option<&str>,
        sdp: &str,
    ) -> anyhow::Result<SdpExchange> {
        self.post_raw(url, token, "application/sdp", sdp.as_bytes().to_vec())
            .await
    }

    /// POSTs any body with any content type.
    pub async fn post_raw(
        &self,
        url: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<SdpExchange> {
        let mut request = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let headers = response.headers().clone();
        let get = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(SdpExchange {
            status: response.status().as_u16(),
            location: get(header::LOCATION),
            etag: get(header::ETAG),
            content_type: get(header::CONTENT_TYPE),
            links: headers
                .get_all(header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect(),
            body: response.text().await?,
        })
    }

    /// DELETE with an optional bearer token; returns the status.
    pub async fn delete(&self, url: &str, token: Option<&str>) -> anyhow::Result<u16> {
        let mut request = self.client.delete(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Ok(request
            .send()
            .await
            .with_context(|| format!("DELETE {url}"))?
            .status()
            .as_u16())
    }

    /// Any method with an optional JSON body and bearer token: `(status, JSON body)`
    /// (`Null` when the body is empty or not JSON).
    pub async fn json(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut request = self.client.request(method.clone(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// GET returning status and JSON (or `Null` if the body is not JSON).
    pub async fn get_json(&self, url: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ))
    }
}
