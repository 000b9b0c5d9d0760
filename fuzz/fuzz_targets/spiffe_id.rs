//! SPIFFE IDs (client certificate SANs, JWT-SVID subjects, `--admin-spiffe-id`): never a
//! panic, and an ID that parses reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_server::SpiffeId;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(text) {
        let again = SpiffeId::parse(id.as_str()).expect("a parsed id parses again");
        assert_eq!(again, id);
        assert_eq!(id.as_str(), text);
    }
});
