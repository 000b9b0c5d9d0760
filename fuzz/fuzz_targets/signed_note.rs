//! Signed notes and checkpoints as a client reads them from a server: never a panic; a note
//! that parses formats back to itself; verification against a key that signed nothing fails.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_contract::checkpoint::{parse_signed_note, verify_checkpoint, Checkpoint};
use zt_contract::note::{format_note, parse_note, verify_note};
use zt_contract::NoteKey;

/// The P-256 generator as a public key: a valid key nobody here signs with.
const X: [u8; 32] = [
    0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2,
    0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
];
const Y: [u8; 32] = [
    0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16,
    0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((body, signatures)) = parse_note(text) {
        assert_eq!(format_note(body, &signatures), text);
        let _ = Checkpoint::parse_body(body);
    }
    let _ = parse_signed_note(text);
    let point: Vec<u8> = [&[4u8][..], &X, &Y].concat();
    if let Ok(key) = NoteKey::from_uncompressed_p256("zt-infra/fuzz", &point) {
        assert!(verify_note(text, std::slice::from_ref(&key)).is_err());
        assert!(verify_checkpoint(text, "zt-infra/fuzz", &[key]).is_err());
    }
    let _ = NoteKey::from_vkey(text.trim_end());
});
