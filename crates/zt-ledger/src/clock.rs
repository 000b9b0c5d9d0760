//! Wall-clock time in the wire format.

use std::time::SystemTime;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

const WIRE: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Now, as `2026-05-01T00:00:00.000Z`.
pub fn wire_now() -> String {
    OffsetDateTime::now_utc()
        .format(WIRE)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

/// `time` as a wire timestamp (truncated to the millisecond).
pub fn wire_time(time: SystemTime) -> String {
    OffsetDateTime::from(time)
        .format(WIRE)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

/// Parses a wire timestamp.
pub fn parse_wire(text: &str) -> Option<SystemTime> {
    let parsed = PrimitiveDateTime::parse(text, WIRE).ok()?;
    Some(parsed.assume_utc().into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_has_the_wire_shape_and_parses_back() {
        let now = super::wire_now();
        assert!(zt_contract::timestamp::is_wire_timestamp(&now));
        let parsed = super::parse_wire(&now).unwrap();
        let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
        assert!(age < std::time::Duration::from_secs(5));
        assert!(super::parse_wire("2026-13-01T00:00:00.000Z").is_none());
    }
}
