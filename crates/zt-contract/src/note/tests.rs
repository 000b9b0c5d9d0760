use super::*;

fn sig(name: &str) -> NoteSignature {
    NoteSignature {
        name: name.into(),
        key_id: 0x0102_0304,
        signature: vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
    }
}

#[test]
fn signature_lines_round_trip() {
    let s = sig("zt.example/audit");
    let line = s.line();
    assert!(
        line.starts_with("\u{2014} zt.example/audit AQIDBD"),
        "{line}"
    );
    assert!(line.ends_with('\n'));
    let note = format_note("body\n", &[s.clone(), sig("other")]);
    let (text, sigs) = parse_note(&note).unwrap();
    assert_eq!(text, "body\n");
    assert_eq!(sigs, vec![s, sig("other")]);
}

#[test]
fn key_names_follow_the_spec() {
    for good in ["a", "zt.example/audit", "zt-p256-0123", "é"] {
        assert!(is_valid_key_name(good), "{good}");
    }
    for bad in ["", "a b", "a+b", "a\tb", "a\u{00a0}b", "a\u{2003}b"] {
        assert!(!is_valid_key_name(bad), "{bad:?}");
    }
}

#[test]
fn the_text_ends_at_the_last_blank_line() {
    let line = sig("k").line();
    let note = format!("a\n\nb\n\n{line}");
    let (text, _) = parse_note(&note).unwrap();
    assert_eq!(text, "a\n\nb\n");
}

#[test]
fn malformed_notes_are_rejected() {
    let line = sig("k").line();
    let cases = [
        (
            format!("body\n\n{}", line.trim_end()),
            NoteError::MissingFinalNewline,
        ),
        (format!("body\n{line}"), NoteError::NoSignatureBlock),
        ("body\n\n".to_string(), NoteError::NoSignatureBlock),
        (format!("bo\rdy\n\n{line}"), NoteError::ControlCharacter),
        (format!("body\n\n{line}\n"), NoteError::NoSignatureBlock),
        (
            format!("body\n\n{line}-- k AQIDBAU=\n"),
            NoteError::MalformedSignatureLine(2),
        ),
        (
            "body\n\n\u{2014} k\n".into(),
            NoteError::MalformedSignatureLine(1),
        ),
        (
            "body\n\n\u{2014} k AQIDBA==\n".into(),
            NoteError::MalformedSignatureLine(1),
        ),
        (
            "body\n\n\u{2014} k AQIDBAU\n".into(),
            NoteError::MalformedSignatureLine(1),
        ),
        (
            "body\n\n\u{2014} k+1 AQIDBAU=\n".into(),
            NoteError::MalformedSignatureLine(1),
        ),
        (
            "body\n\n\u{2014}  AQIDBAU=\n".into(),
            NoteError::MalformedSignatureLine(1),
        ),
        (
            "body\n\n\u{2014} k AQIDBAU= \n".into(),
            NoteError::MalformedSignatureLine(1),
        ),
        (
            "body\n\n\u{2014} k AQID BAU=\n".into(),
            NoteError::MalformedSignatureLine(1),
        ),
    ];
    for (note, want) in cases {
        assert_eq!(parse_note(&note).map(|_| ()), Err(want), "{note:?}");
    }
}

#[test]
fn at_most_max_signatures_are_accepted() {
    let many = |n: usize| format_note("body\n", &vec![sig("k"); n]);
    assert_eq!(
        parse_note(&many(MAX_SIGNATURES)).unwrap().1.len(),
        MAX_SIGNATURES
    );
    assert_eq!(
        parse_note(&many(MAX_SIGNATURES + 1)).map(|_| ()),
        Err(NoteError::TooManySignatures)
    );
}

#[test]
fn error_messages_are_lowercase_without_final_period() {
    let errors = [
        NoteError::ControlCharacter,
        NoteError::NoSignatureBlock,
        NoteError::MissingFinalNewline,
        NoteError::MalformedSignatureLine(1),
        NoteError::TooManySignatures,
        NoteError::NoKnownSignature,
        NoteError::BadSignature {
            name: "k".into(),
            key_id: 1,
        },
        NoteError::InvalidKeyName("a b".into()),
        NoteError::UnsupportedKey("k".into()),
        NoteError::MalformedKey("k".into()),
        NoteError::MalformedVerifierKey("k".into()),
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(msg.starts_with(|c: char| c.is_ascii_lowercase()), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
    assert_eq!(
        NoteError::BadSignature {
            name: "k".into(),
            key_id: 0xab
        }
        .to_string(),
        "the signature by key `k` (000000ab) does not verify"
    );
}
