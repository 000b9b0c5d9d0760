//! The A2A proxy's parsing of a JSON-RPC call (`zt a2a`) and of the resource it decides on:
//! never a panic; a call it decides on is strict JSON-RPC 2.0 whose `method` is the one
//! decided on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_a2a::fuzzing::parse;
use zt_contract::strict_json;

fuzz_target!(|data: &[u8]| {
    if let Some((method, action, _resource)) = parse(data) {
        let value = strict_json::parse_value(data).expect("a decided call parses strictly");
        assert_eq!(value["jsonrpc"], "2.0");
        assert_eq!(value["method"].as_str(), Some(method.as_str()));
        assert!(!action.is_empty());
    }
});
