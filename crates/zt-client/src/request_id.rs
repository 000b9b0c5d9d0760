//! The default `request_id`: 128 random bits in lowercase hex, as every enforcement point
//! sends, so each decision record names the one request it answers.

use crate::ClientError;

/// A fresh request id: 16 bytes from the system's CSPRNG, 32 lowercase hex characters.
/// No randomness is an error (the request is not sent), never a predictable id.
pub fn new_request_id() -> Result<String, ClientError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ClientError::Malformed("no randomness for the request id".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_characters_and_differ() {
        let a = new_request_id().unwrap();
        let b = new_request_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
    }
}
