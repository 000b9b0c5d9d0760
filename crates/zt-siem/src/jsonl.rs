//! The `jsonl` format: the stored record line as it is, so the export still verifies.

use crate::SiemError;

/// The stored line, unchanged but for a trailing line break; refused if it is not one JSON
/// object on one line (an output line must never split into two).
pub fn line(stored: &str) -> Result<String, SiemError> {
    let line = stored.trim_end_matches(['\n', '\r']);
    if line.contains('\n') || !line.trim_start().starts_with('{') {
        return Err(SiemError::NotARecord(
            "a stored record is one JSON object on one line".into(),
        ));
    }
    Ok(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_line_byte_for_byte() {
        let stored = r#"{"seq":0,"b":"x y","a":1}"#;
        assert_eq!(line(stored).unwrap(), stored);
        assert_eq!(line(&format!("{stored}\n")).unwrap(), stored);
        assert!(line("{\"a\":1}\n{\"b\":2}").is_err());
        assert!(line("[1]").is_err());
    }
}
