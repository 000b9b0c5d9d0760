//! What each gateway adds to a call on loopback, beyond the decision itself.
//!
//! Starts `zt serve` (allow-all policy, `--auth none`), a trivial upstream that answers every
//! JSON-RPC call at once, `zt mcp-gateway` (Streamable HTTP) and `zt a2a-proxy` in front of
//! it, then times, round-robin on one kept-alive connection each: a decision (`POST /actions`),
//! a call straight to the upstream, a `tools/call` through the MCP gateway and a
//! `SendMessage` through the A2A proxy. A gateway's overhead at the median is its latency minus
//! the decision's and the direct upstream call's; at p99, its tail beside the decision's. The
//! gateways' decisions carry a `request_id` (and the MCP one a context) that the direct one
//! does not, so the difference slightly overstates the gateway's own work. Run with a release
//! build:
//!
//! ```sh
//! cargo build --release -p zt-cli -p zt-client --example gateway_overhead
//! target/release/examples/gateway_overhead target/release/zt 5000
//! ```
//!
//! Arguments: `[ZT_BINARY [CALLS]]` (default `target/release/zt`, 2000 calls per leg after
//! 200 warm-up calls). Prints p50 and p99 in microseconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

const WARM_UP: usize = 200;

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16, child: &mut Child, what: &str) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            return Err(format!("{what} did not start").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One HTTP/1.1 request or response read off a kept-alive stream: the head and the body.
fn read_message(reader: &mut BufReader<TcpStream>) -> Result<Option<(String, Vec<u8>)>, Error> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// The trivial upstream: an agent card for `GET`, and `{"result": {}}` echoing the id of every
/// JSON-RPC `POST`, on kept-alive connections. Serves both the MCP gateway and the A2A proxy.
fn trivial_upstream() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let card = format!(
        r#"{{"name":"bench","version":"1","description":"bench","capabilities":{{}},"skills":[],"defaultInputModes":["text/plain"],"defaultOutputModes":["text/plain"],"supportedInterfaces":[{{"url":"http://127.0.0.1:{port}/","protocolBinding":"JSONRPC","protocolVersion":"1.0"}}]}}"#
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let card = card.clone();
            std::thread::spawn(move || serve_connection(stream, &card));
        }
    });
    Ok(port)
}

fn serve_connection(stream: TcpStream, card: &str) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Ok(Some((head, body))) = read_message(&mut reader) {
        let answer = if head.starts_with("GET") {
            card.to_string()
        } else {
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .map(|call| call.get("id").cloned().unwrap_or_default())
                .unwrap_or_default();
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[],"isError":false}}}}"#)
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// One timed leg: a kept-alive connection and the request it repeats.
struct Leg {
    name: &'static str,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    samples: Vec<Duration>,
}

impl Leg {
    fn new(name: &'static str, port: u16, path: &str, body: &str) -> Result<Self, Error> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        Ok(Self {
            name,
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            request: request.into_bytes(),
            samples: Vec::new(),
        })
    }

    fn call(&mut self, record: bool) -> Result<(), Error> {
        let start = Instant::now();
        self.writer.write_all(&self.request)?;
        let (head, body) = read_message(&mut self.reader)?.ok_or("connection closed")?;
        let elapsed = start.elapsed();
        if !(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.1 201")) {
            return Err(format!("{}: {head}{}", self.name, String::from_utf8_lossy(&body)).into());
        }
        if record {
            self.samples.push(elapsed);
        }
        Ok(())
    }

    /// p50 and p99 in microseconds.
    fn percentiles(&mut self) -> (f64, f64) {
        self.samples.sort();
        let at = |q: f64| {
            let index = ((self.samples.len() as f64 - 1.0) * q).round() as usize;
            self.samples
                .get(index)
                .map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        (at(0.50), at(0.99))
    }
}

fn spawn(zt: &str, args: &[&str], control_plane: &str) -> Result<Running, Error> {
    Ok(Running(
        Command::new(zt)
            .args(args)
            .env("ZT_CONTROL_PLANE_URL", control_plane)
            .env("ZT_ACTOR", "bench-agent")
            .env_remove("ZT_TOKEN")
            .env("ZT_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

fn run(zt: &str, calls: usize) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("zt-gateway-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let policy = dir.join("allow-all.cedar");
    std::fs::write(
        &policy,
        "@id(\"all\")\n@reason(\"benchmark\")\npermit(principal, action, resource);\n",
    )?;
    let (serve_port, mcp_port, a2a_port) = (free_port()?, free_port()?, free_port()?);
    let control_plane = format!("http://127.0.0.1:{serve_port}");
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let data = dir.join("data");
    let mut serve = spawn(
        zt,
        &[
            "serve",
            "--auth",
            "none",
            "--listen",
            &listen(serve_port),
            "--data-dir",
            data.to_str().ok_or("temp dir is not UTF-8")?,
            "--policy",
            policy.to_str().ok_or("temp dir is not UTF-8")?,
        ],
        &control_plane,
    )?;
    wait_listening(serve_port, &mut serve.0, "zt serve")?;
    let upstream = trivial_upstream()?;
    let mut mcp = spawn(
        zt,
        &[
            "mcp-gateway",
            "--server-name",
            "bench",
            "--listen",
            &listen(mcp_port),
            "--upstream",
            &format!("http://127.0.0.1:{upstream}/mcp"),
        ],
        &control_plane,
    )?;
    wait_listening(mcp_port, &mut mcp.0, "zt mcp-gateway")?;
    let mut a2a = spawn(
        zt,
        &[
            "a2a-proxy",
            "--agent-name",
            "bench",
            "--listen",
            &listen(a2a_port),
            "--upstream",
            &format!("http://127.0.0.1:{upstream}"),
        ],
        &control_plane,
    )?;
    wait_listening(a2a_port, &mut a2a.0, "zt a2a-proxy")?;

    // `--auth none` still decides only for registered agents.
    Leg::new(
        "register",
        serve_port,
        "/agents",
        r#"{"actor":"bench-agent"}"#,
    )?
    .call(false)?;
    let tool_call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"path":"docs"}}}"#;
    let message = r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"1","role":"ROLE_USER","parts":[{"text":"hi"}],"metadata":{"resource":"docs"}}}}"#;
    let decision = r#"{"actor":"bench-agent","action":"mcp.bench.echo","resource":"docs"}"#;
    let mut legs = vec![
        Leg::new("decision", serve_port, "/actions", decision)?,
        Leg::new("upstream", upstream, "/mcp", tool_call)?,
        Leg::new("mcp-gateway", mcp_port, "/mcp", tool_call)?,
        Leg::new("a2a-proxy", a2a_port, "/", message)?,
    ];
    // Round-robin, so that load on the machine falls on every leg alike.
    for round in 0..WARM_UP + calls {
        for leg in &mut legs {
            leg.call(round >= WARM_UP)?;
        }
    }
    let mut p = std::collections::BTreeMap::new();
    println!("{calls} calls per leg, microseconds");
    println!("{:<12} {:>8} {:>8}", "leg", "p50", "p99");
    for leg in &mut legs {
        let (p50, p99) = leg.percentiles();
        println!("{:<12} {p50:>8.0} {p99:>8.0}", leg.name);
        p.insert(leg.name, (p50, p99));
    }
    let leg = |name: &str| p.get(name).copied().unwrap_or_default();
    // Medians add up; tails do not (the slowest decisions and upstream calls are not the same
    // calls), so the p99 line compares the gateway's tail with the decision's alone.
    let ((d50, d99), (u50, _)) = (leg("decision"), leg("upstream"));
    for gateway in ["mcp-gateway", "a2a-proxy"] {
        let (p50, p99) = leg(gateway);
        println!(
            "{gateway}: p50 {:.0} us beyond decision + upstream; p99 {:.0} us beyond the decision's p99",
            p50 - d50 - u50,
            p99 - d99
        );
    }
    drop((mcp, a2a, serve));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let zt = args.first().map_or("target/release/zt", String::as_str);
    let calls = match args.get(1).map(|n| n.parse::<usize>()).transpose() {
        Ok(calls) => calls.unwrap_or(2000).max(1),
        Err(e) => {
            eprintln!("CALLS is not a number: {e}");
            return ExitCode::from(2);
        }
    };
    match run(zt, calls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway_overhead: {e}");
            ExitCode::FAILURE
        }
    }
}
