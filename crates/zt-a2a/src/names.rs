//! Name segments of action names, spelled exactly as the reference clients spell them, so one
//! policy serves every enforcement point.
// TODO: zt_client::names: use the shared sanitiser once it exists, and delete this one.

/// The input with every run of characters outside `[A-Za-z0-9_.-]` replaced by `_`, leading
/// and trailing `._-` trimmed, `unknown` if nothing is left.
pub(crate) fn segment(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut in_run = false;
    for c in input.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    let trimmed = out.trim_matches(['.', '_', '-']);
    if trimmed.is_empty() {
        "unknown".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn segments_follow_the_reference_clients() {
        let cases = [
            ("github_agent", "github_agent"),
            ("GitHub Agent", "GitHub_Agent"),
            ("a  b//c", "a_b_c"),
            ("  spaced  ", "spaced"),
            ("..x.y-", "x.y"),
            ("été", "t"),
            ("", "unknown"),
            ("!!!", "unknown"),
            ("-_.", "unknown"),
        ];
        for (input, expected) in cases {
            assert_eq!(segment(input), expected, "input `{input}`");
        }
    }
}
