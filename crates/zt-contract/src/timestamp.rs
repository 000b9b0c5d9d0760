//! The wire timestamp: RFC 3339, UTC, milliseconds, `Z` (`2026-05-01T00:00:00.000Z`).

/// True if `s` has exactly the wire timestamp shape. Calendar validity is the writer's job;
/// the verifier only needs to know the field was not mangled into another shape.
pub fn is_wire_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 24 {
        return false;
    }
    b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b'T',
        13 | 16 => *c == b':',
        19 => *c == b'.',
        23 => *c == b'Z',
        _ => c.is_ascii_digit(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_wire_shape() {
        assert!(is_wire_timestamp("2026-11-25T17:08:38.634Z"));
        assert!(!is_wire_timestamp("2026-11-25T17:08:38Z"));
        assert!(!is_wire_timestamp("2026-11-25T17:08:38.634+00:00"));
        assert!(!is_wire_timestamp("2026-11-25 17:08:38.634Z"));
    }
}
