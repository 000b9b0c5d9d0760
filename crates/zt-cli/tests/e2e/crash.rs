//! `kill -9` under load, several times on one data directory: nothing acknowledged is ever
//! lost, and every restart continues the one chain instead of forking it.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assert_one_chain, http_raw, parse, verify_report, Server};
use serde_json::{json, Value};

/// Crash rounds on the same data directory.
const ROUNDS: usize = 3;
/// Load threads per round.
const LOAD_THREADS: usize = 16;
/// Most requests one load thread sends in one round.
const MAX_REQUESTS_PER_THREAD: usize = 5_000;
/// No load thread runs longer than this in one round, whatever happens.
const THREAD_BUDGET: Duration = Duration::from_secs(4);

/// An acknowledged decision: a complete 200/403 answer with its audit envelope.
#[derive(Debug, Clone)]
struct Ack {
    round: usize,
    status: u16,
    seq: u64,
    current_hash: String,
    previous_hash: String,
    actor: String,
    action: String,
    resource: String,
}

/// One `POST /actions`. `Ok(Some(ack))` for a complete decision answer, `Ok(None)` for a
/// complete answer that is not a decision (reported back for the caller to judge), `Err` when
/// the connection failed or the answer was cut off (the server died mid-request).
fn post_decision(
    port: u16,
    round: usize,
    actor: &str,
    action: &str,
    resource: &str,
) -> std::io::Result<Result<Ack, (u16, String)>> {
    let body = json!({"actor": actor, "action": action, "resource": resource}).to_string();
    let (status, headers, raw) = http_raw(port, "POST", "/actions", &[], Some(body.as_bytes()))?;
    let length = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .ok_or_else(|| std::io::Error::other("answer without content-length"))?;
    if raw.len() != length {
        return Err(std::io::Error::other(format!(
            "answer cut off: {} of {length} bytes",
            raw.len()
        )));
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    if status != 200 && status != 403 {
        return Ok(Err((status, text)));
    }
    let v: Value =
        serde_json::from_slice(&raw).map_err(|e| std::io::Error::other(format!("{e}: {text}")))?;
    let hash = v["audit"]["current_hash"].as_str();
    let previous = v["audit"]["previous_hash"].as_str();
    let seq = v["evidence"]["seq"].as_u64();
    let (Some(hash), Some(previous), Some(seq)) = (hash, previous, seq) else {
        return Ok(Err((status, text)));
    };
    Ok(Ok(Ack {
        round,
        status,
        seq,
        current_hash: hash.to_string(),
        previous_hash: previous.to_string(),
        actor: actor.to_string(),
        action: action.to_string(),
        resource: resource.to_string(),
    }))
}

/// Everything the load threads of one round saw.
#[derive(Default)]
struct RoundLog {
    acks: Vec<Ack>,
    /// Complete answers that were neither 200 nor 403 decisions.
    odd_answers: Vec<(u16, String)>,
    /// Connection errors and cut-off answers (each ends its thread).
    errors: Vec<String>,
}

/// Sends decisions as fast as it can until told to stop, until the server goes away, or
/// until its count or time budget runs out.
fn load_thread(
    port: u16,
    round: usize,
    id: usize,
    stop: &AtomicBool,
    sent: &AtomicUsize,
    log: &Mutex<RoundLog>,
) {
    let started = Instant::now();
    let actor = "crash-agent";
    for n in 0..MAX_REQUESTS_PER_THREAD {
        if stop.load(Ordering::Acquire) || started.elapsed() > THREAD_BUDGET {
            return;
        }
        let action = match n % 3 {
            0 => format!("crash.read.r{round}"),
            1 => format!("crash.write.r{round}"),
            _ => format!("crash.read.r{round}.t{id}"),
        };
        let (who, action) = if n % 5 == 4 {
            ("crash-ghost".to_string(), action)
        } else {
            (actor.to_string(), action)
        };
        let resource = format!("r{round}-t{id}-n{n}");
        sent.fetch_add(1, Ordering::Relaxed);
        match post_decision(port, round, &who, &action, &resource) {
            Ok(Ok(ack)) => log.lock().unwrap().acks.push(ack),
            Ok(Err(odd)) => log.lock().unwrap().odd_answers.push(odd),
            // Refused or cut off: the server is gone (or going). Stop.
            Err(e) => {
                log.lock()
                    .unwrap()
                    .errors
                    .push(format!("thread {id} request {n}: {e}"));
                return;
            }
        }
    }
}

/// Load threads sending decisions to one server until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    log: Arc<Mutex<RoundLog>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `threads` load threads against the server on `port`, in `round`.
    fn start(port: u16, round: usize, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(RoundLog::default()));
        let threads = (0..threads)
            .map(|id| {
                let (stop, sent, log) = (stop.clone(), sent.clone(), log.clone());
                std::thread::spawn(move || load_thread(port, round, id, &stop, &sent, &log))
            })
            .collect();
        Load {
            stop,
            sent,
            log,
            threads,
        }
    }

    /// Decisions acknowledged so far.
    fn acked(&self) -> usize {
        self.log.lock().unwrap().acks.len()
    }

    /// Threads that have already stopped by themselves.
    fn finished(&self) -> usize {
        self.threads.iter().filter(|t| t.is_finished()).count()
    }

    /// Stops every thread; what they saw, and how many requests they sent.
    fn finish(self) -> (RoundLog, usize) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            t.join().expect("load thread panicked");
        }
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        (log, self.sent.load(Ordering::Relaxed))
    }
}

/// Each acknowledgement is the policy's decision: reads by the registered agent are allowed,
/// everything else is denied.
fn assert_decided_by_policy(acks: &[Ack], when: &str) {
    for ack in acks {
        let allowed = ack.actor == "crash-agent" && ack.action.starts_with("crash.read.");
        assert_eq!(
            ack.status,
            if allowed { 200 } else { 403 },
            "{when}: {ack:?}"
        );
    }
}

/// Checks every acknowledgement so far against the stored log.
fn assert_acks_stored(acks: &[Ack], records: &[Value], when: &str) {
    let by_hash: HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r["current_hash"].as_str().unwrap(), i))
        .collect();
    assert_eq!(
        by_hash.len(),
        records.len(),
        "{when}: a current_hash appears twice in the log"
    );
    let mut lost = Vec::new();
    for ack in acks {
        match by_hash.get(ack.current_hash.as_str()) {
            None => lost.push(ack),
            Some(&i) => {
                let r = &records[i];
                assert_eq!(
                    i as u64, ack.seq,
                    "{when}: acknowledged {ack:?} stored at seq {i}"
                );
                assert_eq!(
                    r["previous_hash"],
                    ack.previous_hash.as_str(),
                    "{when}: {ack:?}"
                );
                assert_eq!(r["actor"], ack.actor.as_str(), "{when}: {ack:?}");
                assert_eq!(r["action"], ack.action.as_str(), "{when}: {ack:?}");
                assert_eq!(r["resource"], ack.resource.as_str(), "{when}: {ack:?}");
                let decision = if ack.status == 200 { "allow" } else { "deny" };
                assert_eq!(r["decision"], decision, "{when}: {ack:?}");
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{when}: {} of {} acknowledged decisions are missing from the log ({} records); first: {:?}",
        lost.len(),
        acks.len(),
        records.len(),
        lost.first()
    );
}

/// After a restart: the log still holds every earlier record unchanged, and the first new
/// decision continues the chain from the last stored record.
fn assert_restart_continues(
    server: &Server,
    before: &[String],
    acks: &[Ack],
    round: usize,
) -> Vec<String> {
    let when = format!("restart before round {round}");
    let lines = server.records();
    assert!(
        lines.len() >= before.len(),
        "{when}: the log shrank from {} to {} records",
        before.len(),
        lines.len()
    );
    assert_eq!(
        &lines[..before.len()],
        before,
        "{when}: records seen before the crash changed"
    );
    let records = assert_one_chain(&lines, &when);
    assert_acks_stored(acks, &records, &when);

    let (s, head) = server.json("GET", "/audit/head", None);
    assert_eq!(s, 200);
    assert_eq!(head["records"], records.len(), "{when}: head");
    let last = records.last().expect("the log is not empty after a round");
    assert_eq!(head["current_hash"], last["current_hash"], "{when}: head");

    let (s, first) = server.decide("crash-agent", &format!("crash.read.probe{round}"), "probe");
    assert_eq!(
        s, 200,
        "{when}: registry and policy must survive kill -9: {first}"
    );
    assert_eq!(
        first["audit"]["previous_hash"], last["current_hash"],
        "{when}: the first new decision must link to the last stored record"
    );
    assert_eq!(
        first["evidence"]["seq"],
        last["seq"].as_u64().unwrap() + 1,
        "{when}: first new seq"
    );
    server.records()
}

/// A kill delay in 300..=700 ms that differs per round and per run.
fn kill_delay(round: usize) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(300 + (nanos / 1000 + round as u64 * 137) % 401)
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged_and_never_forks() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut all_acks: Vec<Ack> = Vec::new();
    let mut seen: Vec<String> = Vec::new();

    for round in 0..ROUNDS {
        let server = Server::start(&data_dir, &[]);
        if round == 0 {
            let (s, b) = server.json("POST", "/agents", Some(json!({"actor": "crash-agent"})));
            assert_eq!(s, 201, "{b}");
            let (s, b) = server.json(
                "POST",
                "/policies/allow",
                Some(json!({"action": "crash.read.*", "reason": "reads survive crashes"})),
            );
            assert_eq!(s, 201, "{b}");
            seen = server.records();
            // Registration, then the allow shortcut's proposal, approval and activation.
            assert_eq!(seen.len(), 4);
        } else {
            seen = assert_restart_continues(&server, &seen, &all_acks, round);
        }

        let load = Load::start(server.port, round, LOAD_THREADS);

        let delay = kill_delay(round);
        std::thread::sleep(delay);
        let acked_before_kill = load.acked();
        let finished_before_kill = load.finished();
        server.kill9();
        let (log, sent) = load.finish();
        assert!(
            log.odd_answers.is_empty(),
            "round {round}: complete answers that were not decisions: {:?}",
            &log.odd_answers[..log.odd_answers.len().min(3)]
        );
        assert!(
            log.errors.len() <= LOAD_THREADS,
            "round {round}: {:?}",
            log.errors
        );
        assert!(
            acked_before_kill > 0,
            "round {round}: no decision was acknowledged in {delay:?}"
        );
        assert_eq!(
            finished_before_kill, 0,
            "round {round}: load threads stopped before the kill; the kill was not under load"
        );
        assert_decided_by_policy(&log.acks, &format!("round {round}"));
        for ack in &log.acks {
            assert_eq!(ack.round, round);
        }
        eprintln!(
            "round {round}: killed after {delay:?}; {sent} requests sent, {} acknowledged",
            log.acks.len()
        );
        all_acks.extend(log.acks);
    }

    // The final restart: everything acknowledged in every round is there, the chain continues.
    let server = Server::start(&data_dir, &[]);
    seen = assert_restart_continues(&server, &seen, &all_acks, ROUNDS);
    let rounds_seen: std::collections::BTreeSet<usize> = all_acks.iter().map(|a| a.round).collect();
    assert_eq!(
        rounds_seen.len(),
        ROUNDS,
        "every round acknowledged something"
    );

    // Verification beside the running server, offline and over HTTP, while load goes on.
    let dir_arg = data_dir.to_str().unwrap().to_string();
    let load = Load::start(server.port, ROUNDS, 4);
    std::thread::sleep(Duration::from_millis(100));
    let report = verify_report(
        &["audit", "verify", "--data-dir", &dir_arg],
        "while the final server runs",
    );
    assert!(
        report["records"].as_u64().unwrap() >= seen.len() as u64,
        "{report}"
    );
    let url = server.url();
    let out = common::zt(&["audit", "verify", "--url", &url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify --url while the final server runs\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (log, _) = load.finish();
    assert!(
        log.odd_answers.is_empty(),
        "final server: {:?}",
        log.odd_answers.first()
    );
    assert!(
        log.errors.is_empty(),
        "requests failed while the final server was up: {:?}",
        log.errors
    );
    assert!(!log.acks.is_empty(), "no load ran beside the verification");
    assert_decided_by_policy(&log.acks, "final server");
    all_acks.extend(log.acks);
    seen = server.records();
    let records = assert_one_chain(&seen, "final server");
    assert_acks_stored(&all_acks, &records, "final server");

    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM shutdown of the final server must exit 0"
    );
    let report = verify_report(
        &["audit", "verify", "--data-dir", &dir_arg],
        "after clean shutdown",
    );
    assert_eq!(report["records"], seen.len(), "{report}");
    assert_eq!(
        report["head_hash"].as_str(),
        parse(seen.last().unwrap())["current_hash"].as_str(),
        "{report}"
    );

    eprintln!(
        "e2e_crash: {ROUNDS} rounds, {} acknowledged decisions, {} records, {:?}",
        all_acks.len(),
        seen.len(),
        test_started.elapsed()
    );
}
