//! Path segments from caller data (an actor such as `spiffe://example.org/agent/a`, a
//! proposal id): percent-encoded, so the server sees one segment, exactly as given.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` as one path segment.
pub(crate) fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spiffe_id_is_one_segment() {
        assert_eq!(
            segment("spiffe://example.org/agent/a"),
            "spiffe%3A%2F%2Fexample.org%2Fagent%2Fa"
        );
        assert_eq!(segment("bench-agent_1.x~"), "bench-agent_1.x~");
        assert_eq!(segment("a b?#é"), "a%20b%3F%23%C3%A9");
    }
}
