//! Wall-clock time in the wire format.

use time::macros::format_description;
use time::OffsetDateTime;

/// Now, as `2026-05-01T00:00:00.000Z`.
pub fn wire_now() -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_has_the_wire_shape() {
        assert!(zt_contract::timestamp::is_wire_timestamp(&super::wire_now()));
    }
}
