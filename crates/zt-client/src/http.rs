//! A small HTTP/1 client over hyper, with a timeout on every request.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::ClientError;

#[derive(Clone)]
pub(crate) struct HttpClient {
    base: String,
    timeout: Duration,
    bearer: Option<HeaderValue>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub(crate) fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::BadUrl(base_url.into()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::BadUrl(base_url.into()));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            timeout,
            bearer: None,
            client,
        })
    }

    /// Sends `Authorization: Bearer <token>` on every request. The header is marked sensitive
    /// so it never appears in debug output.
    pub(crate) fn set_bearer(&mut self, token: &str) -> Result<(), ClientError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::Malformed("the token is not a valid header value".into()))?;
        value.set_sensitive(true);
        self.bearer = Some(value);
        Ok(())
    }

    /// Sends one request; returns the status and the whole body.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), ClientError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        let uri: Uri = format!("{}{}", self.base, path)
            .parse()
            .map_err(|_| ClientError::BadUrl(self.base.clone()))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(bearer) = &self.bearer {
            request.headers_mut().insert(AUTHORIZATION, bearer.clone());
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }
}
