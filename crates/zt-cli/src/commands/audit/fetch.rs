//! GET requests to a control plane's public audit routes, for the checkpoint and proof
//! commands: plain HTTP, an optional bearer token, a timeout and a cap on the answer's size
//! (the server is the party being checked, so nothing it sends is trusted, not even its size).

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

/// Most bytes read from one answer.
const MAX_ANSWER: usize = 16 << 20;
/// Time allowed for one request.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A control plane at a base URL.
pub struct Fetcher {
    base: String,
    bearer: Option<HeaderValue>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Fetcher {
    /// A client for `base_url` (`http://host:port`), sending `token` as a bearer if given.
    pub fn new(base_url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let base = base_url.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .with_context(|| format!("invalid --url `{base_url}`"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            bail!("--url must be an http://host:port URL, not `{base_url}`");
        }
        let bearer = token
            .map(|t| {
                let mut value = HeaderValue::from_str(&format!("Bearer {t}"))
                    .context("the token is not a valid header value")?;
                value.set_sensitive(true);
                anyhow::Ok(value)
            })
            .transpose()?;
        Ok(Self {
            base,
            bearer,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// `GET path`: the body of a 200 answer; any other status is an error naming it.
    pub async fn get(&self, path: &str) -> anyhow::Result<Bytes> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::get(url.as_str()).body(Empty::new())?;
        if let Some(bearer) = &self.bearer {
            request.headers_mut().insert(AUTHORIZATION, bearer.clone());
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .with_context(|| format!("cannot reach `{url}`"))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the answer of `{url}`: {e}"))?
                .to_bytes();
            if !status.is_success() {
                let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
                bail!("`{url}` answered {}: {text}", status.as_u16());
            }
            Ok(body)
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .with_context(|| format!("`{url}` did not answer within {TIMEOUT:?}"))?
    }

    /// `GET path` as UTF-8 text.
    pub async fn text(&self, path: &str) -> anyhow::Result<String> {
        let body = self.get(path).await?;
        String::from_utf8(body.to_vec()).with_context(|| format!("`{path}` is not UTF-8 text"))
    }

    /// `GET path` as JSON.
    pub async fn json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body).with_context(|| format!("`{path}` answered malformed JSON"))
    }
}
