//! The gateways' listeners against slow and numerous clients, as the control plane's: the real
//! `zt mcp-gateway --listen` and `zt a2a-proxy` over real sockets cap their connections (503
//! past the cap, as JSON-RPC errors), close a connection whose headers do not arrive in time,
//! and serve again once the slow clients are gone, and answer a body that trickles in with a
//! 408. Neither needs its control plane or upstream to refuse these. The MCP gateway also
//! bounds how long it waits for an upstream that stalls.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    closed_by_peer, free_port, http_raw, parse_http_response, slow_header_socket,
    start_a2a_proxy_with, trickle_body, zt_bin, Running,
};
use serde_json::{json, Value};

const LIMITS: [&str; 6] = [
    "--max-connections",
    "2",
    "--header-timeout",
    "2",
    "--body-timeout",
    "1",
];

/// An A2A agent that only serves its card (a JSON-RPC interface at `/`), on a thread; its port.
fn card_only_agent() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let card = json!({"name": "card-only", "supportedInterfaces": [
        {"url": format!("http://127.0.0.1:{port}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
    ]})
    .to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{card}",
                    card.len()
                )
                .as_bytes(),
            );
        }
    });
    port
}

/// `zt mcp-gateway --listen` in front of an endpoint nothing listens on, with `LIMITS`; returns
/// it once it listens.
fn mcp_gateway() -> (Running, u16) {
    mcp_gateway_of(free_port(), &LIMITS)
}

/// `zt mcp-gateway --listen` in front of `http://127.0.0.1:UPSTREAM/mcp`, with `extra` flags,
/// deciding with a control plane nothing listens for; returns it once it listens.
fn mcp_gateway_of(upstream: u16, extra: &[&str]) -> (Running, u16) {
    let port = free_port();
    let gateway = Running::listening(
        Command::new(zt_bin())
            .args(["mcp-gateway", "--server-name", "s"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("http://127.0.0.1:{upstream}/mcp")])
            .args(extra)
            .env(
                "ZT_CONTROL_PLANE_URL",
                format!("http://127.0.0.1:{}", free_port()),
            )
            .env("ZT_ACTOR", "agent")
            .env("ZT_TOKEN", "zt_agent_unused")
            .env("ZT_LOG", "warn"),
        port,
    );
    (gateway, port)
}

/// A JSON-RPC `ping` to `path`: status and body.
fn ping(port: u16, path: &str) -> (u16, Value) {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (status, _, raw) = http_raw(port, "POST", path, &[], Some(body)).unwrap();
    (status, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

/// With both places held by slow sockets a request gets a 503 JSON-RPC error; the sockets are
/// closed by the header timeout; then requests are served again (`served` is what they get).
fn cap_and_header_timeout(port: u16, path: &str, served: u16) {
    // The place of the last request is freed a moment after its client saw it closed (see
    // `limits::slow_clients_are_cut_off_the_cap_holds_and_health_answers`): let it be freed.
    std::thread::sleep(Duration::from_millis(200));
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..2).map(|_| slow_header_socket(port, path)).collect();
    // The listener takes the slow sockets in its own time: ask until the cap shows, well
    // inside the 2 s header timeout.
    let (status, busy) = loop {
        let answer = ping(port, path);
        if answer.0 == 503 || opened.elapsed() >= Duration::from_millis(1500) {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status,
        503,
        "past the cap, {:?} after the slow sockets: {busy}",
        opened.elapsed()
    );
    assert_eq!(busy["jsonrpc"], "2.0", "{busy}");
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many connections"),
        "{busy}"
    );
    for stream in &mut slow {
        assert!(
            closed_by_peer(stream, Duration::from_secs(10)),
            "a socket that never finishes its headers is closed"
        );
    }
    let mut status = 0;
    for _ in 0..20 {
        status = ping(port, path).0;
        if status != 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status, served,
        "served again once the slow sockets are gone"
    );
}

/// A `POST` whose body trickles in a byte at a time is answered, once the body timeout passes,
/// with a 408 JSON-RPC error saying `message`.
fn assert_body_timeout(port: u16, path: &str, message: &str) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let raw = trickle_body(&mut stream, path, "");
    let (status, _, body) = parse_http_response(&raw).expect("an answer to the slow body");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
}

#[test]
fn the_mcp_gateway_caps_connections_and_cuts_off_slow_clients() {
    let (_gateway, port) = mcp_gateway();
    // Served: relayed to the upstream, which is down (502).
    assert_eq!(ping(port, "/mcp").0, 502);
    cap_and_header_timeout(port, "/mcp", 502);
    // A body that trickles in: 408 once the 1 s body timeout passes, never relayed.
    assert_body_timeout(port, "/mcp", "request body not received in time");
}

/// An MCP server that reads each request's head and then stalls for 30 s: at once for
/// `GET /mcp?stall=answer`, after one event of an event stream for `GET /mcp?stall=stream`.
fn stalling_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                if request_line.contains("stall=stream") {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    let event = "data: first\n\n";
                    let chunk = format!("{head}{:x}\r\n{event}\r\n", event.len());
                    let _ = (&stream).write_all(chunk.as_bytes());
                }
                std::thread::sleep(Duration::from_secs(30));
            });
        }
    });
    port
}

#[test]
fn the_mcp_gateway_bounds_how_long_it_waits_for_its_upstream() {
    let (_gateway, port) = mcp_gateway_of(
        stalling_upstream(),
        &["--upstream-timeout", "1", "--relay-idle-timeout", "1"],
    );
    // No answer begun within 1 s: 504, long before the upstream's 30 s stall ends.
    let started = Instant::now();
    let (status, _, body) = http_raw(port, "GET", "/mcp?stall=answer", &[], None).unwrap();
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not start answering within 1 s"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // A stream that goes quiet: its first event is relayed, then the connection closes.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /mcp?stall=stream HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut first = BufReader::new(stream.try_clone().unwrap());
    let mut seen = String::new();
    while !seen.contains("data: first") {
        assert!(
            first.read_line(&mut seen).unwrap() > 0,
            "closed before the event: {seen}"
        );
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        closed_by_peer(&mut stream, Duration::from_secs(15)),
        "a stalled stream is cut after the idle timeout, not held for the upstream's 30 s"
    );
}

#[test]
fn the_a2a_proxy_caps_connections_cuts_off_slow_clients_and_bounds_the_body() {
    let agent = card_only_agent();
    let control_plane = format!("http://127.0.0.1:{}", free_port());
    let (_proxy, port) = start_a2a_proxy_with(
        agent,
        "card-only",
        &control_plane,
        "agent",
        "zt_agent_x",
        &LIMITS,
    );
    // Served: `ping` is no A2A method (400, before any decision).
    assert_eq!(ping(port, "/").0, 400);
    cap_and_header_timeout(port, "/", 400);
    // A body that trickles in: 408 once the 1 s body timeout passes, never decided.
    assert_body_timeout(port, "/", "request body not received within 1 s");
}
