//! HTTP/1.1 to one control plane, plain or TLS: kept-alive connections reused from a small
//! pool, a timeout on every exchange (connecting included) and a cap on every answer's size
//! (the server may be the party being checked: nothing it sends is trusted, not even its size).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::url::BaseUrl;
use crate::ClientError;

/// Most idle connections kept for reuse (the steady state is one per concurrent caller).
const MAX_IDLE: usize = 1024;

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type Sender = SendRequest<Full<Bytes>>;

#[derive(Clone)]
pub(crate) struct HttpClient {
    base: BaseUrl,
    host_header: HeaderValue,
    timeout: Duration,
    max_answer: usize,
    bearer: Option<HeaderValue>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    idle: Arc<Mutex<Vec<Sender>>>,
}

impl HttpClient {
    pub(crate) fn new(
        base: BaseUrl,
        timeout: Duration,
        max_answer: usize,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        let tls = match (base.is_tls(), tls) {
            (false, None) => None,
            (false, Some(_)) => return Err(crate::TlsError::NotHttps.into()),
            (true, None) => return Err(crate::TlsError::NoTrust.into()),
            (true, Some(config)) => {
                let name = ServerName::try_from(base.host().to_string()).map_err(|_| {
                    ClientError::Malformed(format!(
                        "`{}` is not a valid tls server name",
                        base.host()
                    ))
                })?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        let host_header = HeaderValue::from_str(&base.authority())
            .map_err(|_| ClientError::Malformed(format!("`{base}` has an invalid host")))?;
        Ok(Self {
            base,
            host_header,
            timeout,
            max_answer,
            bearer: None,
            tls,
            idle: Arc::new(Mutex::new(Vec::new())),
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

    /// Sends one request; returns the status and the whole body (at most the answer cap).
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), ClientError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(bearer) = &self.bearer {
            headers.insert(AUTHORIZATION, bearer.clone());
        }
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), ClientError> {
        let mut request = request;
        // An idle connection the server has closed meanwhile gives the request back unsent;
        // it then goes on the next connection (never sent twice).
        let (mut sender, response) = loop {
            let (mut sender, fresh) = match self.take_idle() {
                Some(sender) => (sender, false),
                None => (self.connect().await?, true),
            };
            let sent = match sender.ready().await {
                Ok(()) => sender.try_send_request(request).await,
                Err(e) if fresh => return Err(ClientError::Unreachable(e.to_string())),
                Err(_) => continue,
            };
            match sent {
                Ok(response) => break (sender, response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(ClientError::Unreachable(e.into_error().to_string())),
                },
            }
        };
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), self.max_answer)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ClientError::TooLarge(self.max_answer)
                } else {
                    ClientError::Unreachable(e.to_string())
                }
            })?
            .to_bytes();
        if sender.ready().await.is_ok() {
            self.put_idle(sender);
        }
        Ok((status, body))
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: Sender) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(sender);
            }
        }
    }

    async fn connect(&self) -> Result<Sender, ClientError> {
        let unreachable =
            |e: &dyn std::fmt::Display| ClientError::Unreachable(format!("{}: {e}", self.base));
        let tcp = tokio::net::TcpStream::connect((self.base.host(), self.base.port()))
            .await
            .map_err(|e| unreachable(&e))?;
        tcp.set_nodelay(true).map_err(|e| unreachable(&e))?;
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| ClientError::Tls(format!("{}: {e}", self.base)))?,
            ),
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        Ok(sender)
    }
}
