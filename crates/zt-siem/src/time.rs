//! The wire timestamp (`2026-05-01T00:00:00.000Z`) as milliseconds since the Unix epoch, the
//! OCSF `timestamp_t`.

use zt_contract::timestamp::wire_timestamp_millis;

use crate::SiemError;

/// Milliseconds since 1970-01-01T00:00:00Z of a wire timestamp.
pub(crate) fn epoch_millis(timestamp: &str) -> Result<i64, SiemError> {
    wire_timestamp_millis(timestamp)
        .ok_or_else(|| SiemError::BadTimestamp(timestamp.chars().take(40).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(
            epoch_millis("2026-11-25T17:08:38.634Z").unwrap(),
            1_795_626_518_634
        );
    }

    #[test]
    fn refuses_other_shapes() {
        assert!(epoch_millis("2026-11-25T17:08:38Z").is_err());
        assert!(epoch_millis("2026-13-25T17:08:38.000Z").is_err());
        assert!(epoch_millis("").is_err());
    }
}
