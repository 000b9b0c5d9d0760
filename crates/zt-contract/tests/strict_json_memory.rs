//! The strict parser's memory bound, checked against the allocator's own count: whatever
//! shape a body takes, the tree built from it (or the part built before it is refused) stays
//! within about `MAX_TREE_BYTES`. One test in this binary, so the count is its alone.

use std::alloc::System;

use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait, INSTRUMENTED_SYSTEM};
use zt_contract::strict_json::{parse_value, MAX_TREE_BYTES};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A JSON array of `item` repeated to about `bytes` bytes.
fn array_of(item: &str, bytes: usize) -> Vec<u8> {
    let mut body = String::with_capacity(bytes + item.len() + 2);
    body.push('[');
    while body.len() < bytes {
        body.push_str(item);
        body.push(',');
    }
    body.push_str(item);
    body.push(']');
    body.into_bytes()
}

/// An object of `count` distinct keys, each holding `0`.
fn object_of(count: usize) -> Vec<u8> {
    let keys: Vec<String> = (0..count).map(|i| format!("\"k{i}\":0")).collect();
    format!("{{{}}}", keys.join(",")).into_bytes()
}

/// Bytes the parse of `body` held at its peak, beyond what was live before it (large blocks
/// grow in place, so a reallocation counts as its growth), and whether it was accepted.
fn peak_of(body: &[u8]) -> (usize, bool) {
    ALLOCATOR.reset_peak_memory();
    let accepted = parse_value(body).is_ok();
    (ALLOCATOR.get_peak_memory(), accepted)
}

#[test]
fn no_body_builds_a_tree_past_the_bound() {
    const BODY: usize = 16 << 20;
    // Allowed a tenth above the bound: the allocator's rounding, and the one item parsed
    // before its place is charged.
    let ceiling = MAX_TREE_BYTES + MAX_TREE_BYTES / 10;
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("numbers", array_of("0", BODY)),
        ("one-key objects", array_of(r#"{"a":0}"#, BODY)),
        ("one-item arrays", array_of("[0]", BODY)),
        ("short strings", array_of(r#""a""#, BODY)),
        ("empty objects", array_of("{}", BODY)),
        ("nested pairs", array_of("[[0,0],{\"b\":[1]}]", BODY)),
        ("distinct keys", object_of(1_500_000)),
    ];
    for (shape, body) in &hostile {
        let (peak, accepted) = peak_of(body);
        println!("{shape}: peak {peak} bytes, accepted {accepted}");
        assert!(
            !accepted,
            "{shape}: a 16 MiB body of small values must be refused"
        );
        assert!(
            peak <= ceiling,
            "{shape}: the parse held {peak} bytes, past {ceiling}"
        );
    }

    // What a tool call may really carry stays accepted, within the same bound.
    let large_string = format!("{{\"content\":\"{}\"}}", "x".repeat(BODY - 32)).into_bytes();
    let many_records = array_of(
        r#"{"id":12345,"name":"a record","tags":["x","y"]}"#,
        1 << 20,
    );
    for (shape, body) in [
        ("a 16 MiB string", large_string),
        ("1 MiB of records", many_records),
    ] {
        let (peak, accepted) = peak_of(&body);
        println!("{shape}: peak {peak} bytes, accepted {accepted}");
        assert!(accepted, "{shape} must be accepted");
        assert!(peak <= ceiling, "{shape}: the parse held {peak} bytes");
    }
}
