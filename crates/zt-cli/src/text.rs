//! Small helpers for the words the commands print.

/// `n` and the noun in the right number: `1 policy`, `2 policies`, `0 records`.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn singular_only_for_one() {
        assert_eq!(count(1, "policy", "policies"), "1 policy");
        assert_eq!(count(0, "record", "records"), "0 records");
        assert_eq!(count(2, "record", "records"), "2 records");
    }
}
