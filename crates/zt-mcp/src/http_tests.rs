//! The Streamable HTTP gateway against raw sockets and a stub upstream.

use super::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

/// One HTTP/1.1 request: its head and its body (by `content-length`).
async fn read_request(socket: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = memchr::memmem::find(&raw, b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request broke off");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse().unwrap());
    while raw.len() < head_end + length {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the body broke off");
        raw.extend_from_slice(&buf[..n]);
    }
    (head, raw[head_end..head_end + length].to_vec())
}

/// An upstream MCP endpoint with the one tool `t`, whose schema's `properties` are
/// `properties`: it answers `tools/list` (counted in `listed`) and any other `POST` with
/// JSON, and holds each `GET` open as an event stream that carries
/// `notifications/tools/list_changed`, cut in two writes, whenever `changed` is sent.
struct Upstream {
    port: u16,
    properties: Arc<std::sync::Mutex<Value>>,
    changed: broadcast::Sender<()>,
    listed: Arc<AtomicUsize>,
    /// Every request received.
    requests: Arc<AtomicUsize>,
    /// Other views: a `tools/list` whose request head (lowercase) holds the first string
    /// lists the tool with the second's properties instead.
    views: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl Upstream {
    async fn start(properties: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Self {
            port: listener.local_addr().unwrap().port(),
            properties: Arc::new(std::sync::Mutex::new(properties)),
            changed: broadcast::channel(4).0,
            listed: Arc::default(),
            requests: Arc::default(),
            views: Arc::default(),
        };
        let served = Served {
            properties: upstream.properties.clone(),
            changed: upstream.changed.clone(),
            listed: upstream.listed.clone(),
            requests: upstream.requests.clone(),
            views: upstream.views.clone(),
        };
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let served = served.clone();
                tokio::spawn(async move { Self::answer(socket, &served).await });
            }
        });
        upstream
    }

    async fn answer(mut socket: TcpStream, served: &Served) {
        let Served {
            properties,
            changed,
            listed,
            requests,
            views,
        } = served;
        let (head, body) = read_request(&mut socket).await;
        requests.fetch_add(1, Ordering::SeqCst);
        if head.starts_with("delete") {
            let ended = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            socket.write_all(ended.as_bytes()).await.unwrap();
            return;
        }
        if head.starts_with("get") {
            let mut changes = changed.subscribe();
            let open = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                        connection: close\r\n\r\n: open\n\n";
            socket.write_all(open.as_bytes()).await.unwrap();
            while changes.recv().await.is_ok() {
                socket
                    .write_all(b"event: message\ndata: {\"jsonrpc\":\"2.0\",")
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                socket
                    .write_all(b"\"method\":\"notifications/tools/list_changed\"}\n\n")
                    .await
                    .unwrap();
            }
            return;
        }
        let message: Value = serde_json::from_slice(&body).unwrap();
        let result = if message["method"] == "tools/list" {
            listed.fetch_add(1, Ordering::SeqCst);
            let view = views
                .lock()
                .unwrap()
                .iter()
                .find_map(|(marker, properties)| {
                    head.contains(marker.as_str()).then(|| properties.clone())
                });
            let properties = view.unwrap_or_else(|| properties.lock().unwrap().clone());
            json!({"tools": [{"name": "t",
                "inputSchema": {"type": "object", "properties": properties}}]})
        } else {
            json!({})
        };
        let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
        let (content_type, mut answer) = if message["method"] == "ping" {
            // An event stream that first says the tools changed.
            let notice = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
            let stream = format!("data: {notice}\n\ndata: {answer}\n\n");
            ("text/event-stream", stream.into_bytes())
        } else {
            ("application/json", answer.to_string().into_bytes())
        };
        // Compressed when the request allows it, as many servers do.
        let mut coding = "";
        if head.contains("accept-encoding: gzip") {
            answer = gzip(&answer);
            coding = "content-encoding: gzip\r\n";
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{coding}\
             content-length: {}\r\nconnection: close\r\n\r\n",
            answer.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.write_all(&answer).await.unwrap();
    }
}

/// A gateway in front of `upstream`, deciding with a control plane that is down (port 9):
/// a call its tool's list covers is denied, undecided. Returns its port.
async fn gateway(upstream: &Upstream) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plane = zt_client::ControlPlane::with_timeout("http://127.0.0.1:9", Duration::from_secs(1))
        .unwrap();
    let gate = Gate::new(plane, "agent", "srv");
    let endpoint = format!("http://127.0.0.1:{}/mcp", upstream.port);
    tokio::spawn(
        async move { serve_http(gate, listener, &endpoint, HttpOptions::default()).await },
    );
    port
}

/// Sends `request` (raw HTTP/1.1, `connection: close`) to the gateway; returns the status,
/// the head (lowercase) and the body of its answer.
async fn exchange(port: u16, request: &str) -> (u16, String, String) {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).await.unwrap();
    // Lossy: a compressed body must fail the test's assertions, not this.
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A request of `method` with `body`, as a client in session `s1` sends it.
fn request(method: &str, body: &str) -> String {
    request_with(method, "", body)
}

/// A request of `method` with `body` and the `extra` header lines, in session `s1`.
fn request_with(method: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-session-id: s1\r\n{extra}\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn only_a_post_carries_a_message_and_other_methods_never_reach_the_upstream() {
    let upstream = Upstream::start(json!({"a": {}})).await;
    let port = gateway(&upstream).await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "t", "arguments": {"a": 1}}})
    .to_string();
    // A server whose framework reads `post` as `POST` (ASP.NET's `IsPost` does), or reads a
    // body under any method, would run the call undecided.
    for method in ["post", "PUT", "PATCH", "Post"] {
        let (status, head, body) = exchange(port, &request(method, &call)).await;
        assert_eq!(status, 405, "{method}: {head}{body}");
        assert!(head.contains("allow: get, post, delete, options"), "{head}");
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(error["error"]["code"], -32600, "{body}");
    }
    // (The answer to a `HEAD` has no body.)
    let (status, _, _) = exchange(port, &request("HEAD", &call)).await;
    assert_eq!(status, 405);
    // `GET`, `DELETE` and `OPTIONS` are relayed only without a body.
    for method in ["GET", "DELETE", "OPTIONS"] {
        let (status, _, body) = exchange(port, &request(method, &call)).await;
        assert_eq!(status, 400, "{method}: {body}");
        let chunked = format!(
            "{method} /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\
             connection: close\r\n\r\n{:x}\r\n{call}\r\n0\r\n\r\n",
            call.len()
        );
        let (status, _, body) = exchange(port, &chunked).await;
        assert_eq!(status, 400, "{method} chunked: {body}");
    }
    // An empty body is no message (nor a notification to accept).
    for blank in ["", " \r\n"] {
        let (status, _, body) = exchange(port, &request("POST", blank)).await;
        assert_eq!(status, 400, "{blank:?}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], -32700, "{body}");
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 0);
    // Without a body, the session's end goes upstream as before.
    let (status, _, body) = exchange(port, &request("DELETE", "")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 1);
}

/// `data` in gzip: one deflate block of fixed Huffman codes, literals only (RFC 1951,
/// 3.2.6; RFC 1952), so that no byte of `data` shows in it as it was.
fn gzip(data: &[u8]) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        byte: u8,
        used: u8,
    }
    impl Bits {
        fn bit(&mut self, bit: u32) {
            self.byte |= u8::from(bit & 1 == 1) << self.used;
            self.used += 1;
            if self.used == 8 {
                self.out.push(self.byte);
                (self.byte, self.used) = (0, 0);
            }
        }
        /// A Huffman code goes most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            for n in (0..len).rev() {
                self.bit(code >> n);
            }
        }
    }
    let mut bits = Bits {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
        byte: 0,
        used: 0,
    };
    // BFINAL, then BTYPE 01 (fixed codes) least significant bit first.
    for bit in [1, 1, 0] {
        bits.bit(bit);
    }
    for &byte in data {
        match u32::from(byte) {
            literal @ 0..=143 => bits.code(0x30 + literal, 8),
            literal => bits.code(0x190 + literal - 144, 9),
        }
    }
    bits.code(0, 7);
    if bits.used > 0 {
        bits.out.push(bits.byte);
    }
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    bits.out.extend_from_slice(&(!crc).to_le_bytes());
    bits.out
        .extend_from_slice(&(data.len() as u32).to_le_bytes());
    bits.out
}

/// What a request handler of [`Upstream`] shares with the test.
#[derive(Clone)]
struct Served {
    properties: Arc<std::sync::Mutex<Value>>,
    changed: broadcast::Sender<()>,
    listed: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    views: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

/// The gateway's JSON answer to one `POST` of `message` in `session`.
async fn post(port: u16, session: &str, message: &Value) -> Value {
    post_to(port, "/mcp", "", session, message).await
}

/// The gateway's JSON answer to one `POST` of `message` to `target` in `session`, with
/// the `extra` header lines.
async fn post_to(port: u16, target: &str, extra: &str, session: &str, message: &Value) -> Value {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let body = message.to_string();
    let request = format!(
        "POST {target} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-session-id: {session}\r\n{extra}\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {raw}"))
}

/// Reads `stream` until what it sent holds `text`.
async fn read_until(stream: &mut TcpStream, text: &str) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while memchr::memmem::find(&raw, text.as_bytes()).is_none() {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_tools_change_announced_on_the_event_stream_is_seen_by_the_next_call() {
    let upstream = Upstream::start(json!({"a": {}, "b": {}})).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Nothing answers on port 9: a call its tool's list covers is denied, undecided.
    let plane = zt_client::ControlPlane::with_timeout("http://127.0.0.1:9", Duration::from_secs(1))
        .unwrap();
    let gate = Gate::new(plane, "agent", "srv");
    let endpoint = format!("http://127.0.0.1:{}/mcp", upstream.port);
    tokio::spawn(
        async move { serve_http(gate, listener, &endpoint, HttpOptions::default()).await },
    );

    let mut events = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let open = format!(
        "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: text/event-stream\r\n\
         mcp-session-id: s1\r\n\r\n"
    );
    events.write_all(open.as_bytes()).await.unwrap();
    read_until(&mut events, ": open").await;

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "t", "arguments": {"a": 1}}});
    let covered = post(port, "s1", &call).await;
    let reason = covered["result"]["content"][0]["text"].as_str();
    assert!(
        reason.is_some_and(|r| r.starts_with("control plane unavailable")),
        "{covered}"
    );
    assert_eq!(upstream.listed.load(Ordering::SeqCst), 1);

    // `a` is gone; the server says so on the session's event stream, which the client
    // reads through the gateway untouched.
    *upstream.properties.lock().unwrap() = json!({"b": {}});
    upstream.changed.send(()).unwrap();
    read_until(
        &mut events,
        r#""method":"notifications/tools/list_changed"}"#,
    )
    .await;

    // Within the second after the last reading, which the notice does not wait out.
    let refused = post(port, "s1", &call).await;
    assert_eq!(
        refused["error"],
        json!({"code": -32602, "message": "argument `a` is not declared by tool `t`"}),
        "{refused}"
    );
    assert_eq!(upstream.listed.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_list_read_under_one_query_or_header_does_not_cover_a_call_under_another() {
    // Under `?v=2`, or with `x-toolset: safe`, the server's `t` takes `b` only.
    let upstream = Upstream::start(json!({"a": {}, "b": {}})).await;
    upstream.views.lock().unwrap().extend([
        ("?v=2 ".to_string(), json!({"b": {}})),
        ("x-toolset: safe".to_string(), json!({"b": {}})),
    ]);
    let port = gateway(&upstream).await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "t", "arguments": {"a": 1}}});
    let undeclared = json!({"code": -32602, "message": "argument `a` is not declared by tool `t`"});
    let covered = post_to(port, "/mcp?v=1", "", "s1", &call).await;
    let reason = covered["result"]["content"][0]["text"].as_str();
    assert!(
        reason.is_some_and(|r| r.starts_with("control plane unavailable")),
        "{covered}"
    );
    let refused = post_to(port, "/mcp?v=2", "", "s1", &call).await;
    assert_eq!(refused["error"], undeclared, "{refused}");
    // The same by a header the server reads.
    let covered = post_to(port, "/mcp?v=1", "x-toolset: all\r\n", "s1", &call).await;
    assert!(covered["result"].is_object(), "{covered}");
    let refused = post_to(port, "/mcp?v=1", "x-toolset: safe\r\n", "s1", &call).await;
    assert_eq!(refused["error"], undeclared, "{refused}");
    assert_eq!(upstream.listed.load(Ordering::SeqCst), 4);
    // A list is still kept for calls made as it was read.
    let again = post_to(port, "/mcp?v=1", "", "s1", &call).await;
    assert!(again["result"].is_object(), "{again}");
    assert_eq!(upstream.listed.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_upstream_is_asked_for_answers_the_gateway_can_read() {
    // The upstream gzips for a client that accepts it; the gateway decodes nothing.
    let upstream = Upstream::start(json!({"a": {}, "b": {}})).await;
    let port = gateway(&upstream).await;
    let gzip = "accept-encoding: gzip, deflate\r\n";
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "t", "arguments": {"a": 1}}})
    .to_string();
    // The gateway's own `tools/list` is readable.
    let (status, _, body) = exchange(port, &request_with("POST", gzip, &call)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("control plane unavailable"),
        "the list was not read: {body}"
    );
    // `a` is gone, and the answer to a relayed `ping` says so before it answers.
    *upstream.properties.lock().unwrap() = json!({"b": {}});
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    let (status, head, body) = exchange(port, &request_with("POST", gzip, ping)).await;
    assert_eq!(status, 200, "{head}{body}");
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(body.contains("notifications/tools/list_changed"), "{body}");
    let (status, _, body) = exchange(port, &request_with("POST", gzip, &call)).await;
    assert_eq!(status, 200, "{body}");
    let refused: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        refused["error"],
        json!({"code": -32602, "message": "argument `a` is not declared by tool `t`"}),
        "{refused}"
    );
    assert_eq!(upstream.listed.load(Ordering::SeqCst), 2);
}

#[test]
fn the_test_upstreams_gzip_is_gzip() {
    // Decompressed by Python's `gzip.decompress` (header, codes, CRC and length checked).
    assert_eq!(
        gzip(b"data: x\n\n"),
        [
            0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x4b, 0x49, 0x2c, 0x49, 0xb4, 0x52, 0xa8, 0xe0,
            0xe2, 0x02, 0x00, 0x81, 0x7b, 0x33, 0x2b, 9, 0, 0, 0
        ]
    );
}

#[test]
fn the_upstream_is_an_http_url_with_a_host() {
    assert_eq!(
        parse_upstream("http://127.0.0.1:3001/mcp").unwrap(),
        ("http://127.0.0.1:3001".to_string(), "/mcp".to_string())
    );
    assert_eq!(
        parse_upstream("http://localhost:9").unwrap().1,
        "/",
        "no path is the root"
    );
    for bad in ["https://x/mcp", "/mcp", "ftp://x", "not a url"] {
        assert!(parse_upstream(bad).is_err(), "{bad}");
    }
}
