//! Signed checkpoints against a hostile network: signatures by unknown, wrong or several keys,
//! tampered bodies and signatures, strict body syntax, and notes cut or mangled anywhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::signer::TestSigner;
use zt_contract::checkpoint::{parse_signed_note, verify_checkpoint};
use zt_contract::merkle::{empty_root, leaf_hash};
use zt_contract::note::{format_note, NoteError, NoteSignature};
use zt_contract::{Checkpoint, CheckpointError};

const ORIGIN: &str = "zt.example/audit";

fn checkpoint() -> Checkpoint {
    Checkpoint::new(ORIGIN, 1234, leaf_hash(b"root"))
}

fn note_error(e: NoteError) -> Result<Checkpoint, CheckpointError> {
    Err(CheckpointError::Note(e))
}

#[test]
fn digest_signing_and_message_signing_agree() {
    let log = TestSigner::new(ORIGIN);
    let body = checkpoint().body();
    for sig in [log.sign_digest(&body), log.sign_message(&body)] {
        let note = format_note(&body, &[sig]);
        assert_eq!(
            verify_checkpoint(&note, ORIGIN, log.keys()),
            Ok(checkpoint())
        );
    }
}

#[test]
fn checkpoints_round_trip_through_body_and_parse() {
    let mut with_ext = checkpoint();
    with_ext.extensions = vec!["Timestamp: 1".into(), "x y z".into()];
    for cp in [
        checkpoint(),
        Checkpoint::new(ORIGIN, 0, empty_root()),
        Checkpoint::new(
            "rekor.sigstore.dev - 2605736670972794746",
            u64::MAX,
            empty_root(),
        ),
        with_ext,
    ] {
        assert_eq!(Checkpoint::parse_body(&cp.body()), Ok(cp.clone()));
        let log = TestSigner::new(ORIGIN);
        assert_eq!(
            verify_checkpoint(&log.note(&cp.body()), &cp.origin, &[log.key]),
            Ok(cp)
        );
    }
}

#[test]
fn signatures_by_unknown_keys_are_ignored_but_one_known_is_required() {
    let (log, witness, stranger) = (
        TestSigner::new(ORIGIN),
        TestSigner::new("witness.example"),
        TestSigner::new(ORIGIN),
    );
    let body = checkpoint().body();
    let known = [log.key.clone()];
    // Only unknown signers: the stranger shares the log's name but not its key ID.
    let only_unknown = format_note(
        &body,
        &[witness.sign_digest(&body), stranger.sign_digest(&body)],
    );
    assert_eq!(
        verify_checkpoint(&only_unknown, ORIGIN, &known),
        note_error(NoteError::NoKnownSignature)
    );
    // A known one among them, in any position.
    for sigs in [
        vec![witness.sign_digest(&body), log.sign_digest(&body)],
        vec![log.sign_digest(&body), stranger.sign_digest(&body)],
    ] {
        assert!(verify_checkpoint(&format_note(&body, &sigs), ORIGIN, &known).is_ok());
    }
    // The log's key ID under another name, or its name with another key ID: unknown.
    let mut renamed = log.sign_digest(&body);
    renamed.name = "other.example".into();
    let mut reid = log.sign_digest(&body);
    reid.key_id ^= 1;
    for sig in [renamed, reid] {
        assert_eq!(
            verify_checkpoint(&format_note(&body, &[sig]), ORIGIN, &known),
            note_error(NoteError::NoKnownSignature)
        );
    }
    // No keys at all.
    assert_eq!(
        verify_checkpoint(&log.note(&body), ORIGIN, &[]),
        note_error(NoteError::NoKnownSignature)
    );
}

#[test]
fn one_failing_signature_from_a_known_key_rejects_the_note() {
    let (log, witness) = (TestSigner::new(ORIGIN), TestSigner::new("witness.example"));
    let body = checkpoint().body();
    let other_body = Checkpoint::new(ORIGIN, 1235, leaf_hash(b"root")).body();
    let keys = [log.key.clone(), witness.key.clone()];
    // The witness signed something else: its known, failing signature rejects the note
    // even though the log's signature is good.
    let note = format_note(
        &body,
        &[log.sign_digest(&body), witness.sign_digest(&other_body)],
    );
    assert_eq!(
        verify_checkpoint(&note, ORIGIN, &keys),
        note_error(NoteError::BadSignature {
            name: "witness.example".into(),
            key_id: witness.key.key_id()
        })
    );
}

#[test]
fn every_bit_flip_of_the_signature_fails() {
    let log = TestSigner::new(ORIGIN);
    let body = checkpoint().body();
    let good = log.sign_digest(&body);
    for bit in 0..good.signature.len() * 8 {
        let mut sig = good.signature.clone();
        sig[bit / 8] ^= 0x80 >> (bit % 8);
        let note = format_note(&body, &[log.signature(sig)]);
        assert!(
            matches!(
                verify_checkpoint(&note, ORIGIN, log.keys()),
                Err(CheckpointError::Note(NoteError::BadSignature { .. }))
            ),
            "bit {bit}"
        );
    }
}

#[test]
fn every_byte_change_of_the_body_fails() {
    let log = TestSigner::new(ORIGIN);
    let mut cp = checkpoint();
    cp.extensions = vec!["ext".into()];
    let note = log.note(&cp.body());
    let body_len = cp.body().len();
    for i in 0..body_len {
        let mut bytes = note.clone().into_bytes();
        // Keep it printable ASCII so the failure is the signature, wherever syntax allows.
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let Ok(tampered) = String::from_utf8(bytes) else {
            continue;
        };
        assert!(
            verify_checkpoint(&tampered, ORIGIN, log.keys()).is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn a_checkpoint_for_another_origin_is_rejected() {
    let log = TestSigner::new(ORIGIN);
    let other = Checkpoint::new("zt.example/other-log", 1, empty_root());
    assert_eq!(
        verify_checkpoint(&log.note(&other.body()), ORIGIN, log.keys()),
        Err(CheckpointError::WrongOrigin {
            expected: ORIGIN.into(),
            found: "zt.example/other-log".into()
        })
    );
}

#[test]
fn bodies_that_break_the_checkpoint_syntax_are_rejected_even_when_signed() {
    let root = checkpoint().body().lines().nth(2).unwrap().to_string();
    let cases = [
        (format!("{ORIGIN}\n1\n"), CheckpointError::TooFewLines),
        (format!("{ORIGIN}\n"), CheckpointError::TooFewLines),
        (format!("\n1\n{root}\n"), CheckpointError::EmptyLine(1)),
        (
            format!("{ORIGIN}\n1\n{root}\n\next\n"),
            CheckpointError::EmptyLine(4),
        ),
        (
            format!("{ORIGIN}\n01\n{root}\n"),
            CheckpointError::BadSize("01".into()),
        ),
        (
            format!("{ORIGIN}\n+1\n{root}\n"),
            CheckpointError::BadSize("+1".into()),
        ),
        (
            format!("{ORIGIN}\n 1\n{root}\n"),
            CheckpointError::BadSize(" 1".into()),
        ),
        (
            format!("{ORIGIN}\n1 \n{root}\n"),
            CheckpointError::BadSize("1 ".into()),
        ),
        (
            format!("{ORIGIN}\n-1\n{root}\n"),
            CheckpointError::BadSize("-1".into()),
        ),
        (
            format!("{ORIGIN}\n0x1\n{root}\n"),
            CheckpointError::BadSize("0x1".into()),
        ),
        (
            format!("{ORIGIN}\n18446744073709551616\n{root}\n"),
            CheckpointError::BadSize("18446744073709551616".into()),
        ),
    ];
    let log = TestSigner::new(ORIGIN);
    for (body, want) in cases {
        assert_eq!(
            verify_checkpoint(&log.note(&body), ORIGIN, log.keys()),
            Err(want.clone()),
            "{body:?}"
        );
        assert_eq!(Checkpoint::parse_body(&body), Err(want));
    }
    assert_eq!(
        Checkpoint::parse_body(&format!("{ORIGIN}\n1\n{root}")),
        Err(CheckpointError::MissingFinalNewline)
    );
    assert_eq!(
        Checkpoint::parse_body(&format!("{ORIGIN}\r\n1\n{root}\n")),
        Err(CheckpointError::ControlCharacter)
    );
}

#[test]
fn only_the_canonical_base64_of_32_bytes_is_a_root() {
    let r = checkpoint().body().lines().nth(2).unwrap().to_string();
    assert!(r.ends_with('='));
    // The last data character carries 4 bits of the root and 2 zero padding bits: set one.
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let last = r.as_bytes()[r.len() - 2];
    let stray = B64[B64.iter().position(|c| *c == last).unwrap() ^ 1] as char;
    let bad_roots = [
        r.trim_end_matches('=').to_string(),      // unpadded
        format!("{}==", &r[..r.len() - 1]),       // over-padded
        format!("{}{stray}=", &r[..r.len() - 2]), // stray bits
        r.replace('+', "-").replace('/', "_"),    // URL alphabet
        "AAAA".to_string(),                       // 3 bytes
        "A".repeat(44),                           // 33 bytes
        format!("{r} "),
        String::new(),
    ];
    for bad in bad_roots.iter().filter(|b| **b != r) {
        let body = format!("{ORIGIN}\n1\n{bad}\n");
        assert!(
            matches!(
                Checkpoint::parse_body(&body),
                Err(CheckpointError::BadRoot(_) | CheckpointError::EmptyLine(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn notes_cut_or_mangled_anywhere_are_rejected_without_panicking() {
    let log = TestSigner::new(ORIGIN);
    let note = log.note(&checkpoint().body());
    let keys = [log.key.clone()];
    for cut in 0..note.len() {
        if let Some(prefix) = note.get(..cut) {
            assert!(
                verify_checkpoint(prefix, ORIGIN, &keys).is_err(),
                "cut at {cut}"
            );
            let _ = parse_signed_note(prefix);
        }
    }
    let manglings = [
        note.replace('\n', "\r\n"),
        note.replace('\u{2014}', "--"),
        note.replace("\u{2014} ", "\u{2014}  "),
        note.replace("\n\n", "\n"),
        note.replace("\n\n", "\n \n"),
        format!("{note}\n"),
        format!("{note} "),
        format!("\u{feff}{note}"),
        note.replace("\n\u{2014}", "\n\n\u{2014}"),
        format!(
            "{note}{}",
            NoteSignature {
                name: "x".into(),
                key_id: 0,
                signature: vec![]
            }
            .line()
        ),
    ];
    for m in manglings {
        assert!(verify_checkpoint(&m, ORIGIN, &keys).is_err(), "{m:?}");
    }
}
