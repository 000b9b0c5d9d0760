//! The wire timestamp (`2026-05-01T00:00:00.000Z`) as milliseconds since the Unix epoch, the
//! OCSF `timestamp_t`.

use zt_contract::timestamp::is_wire_timestamp;

use crate::SiemError;

/// Milliseconds since 1970-01-01T00:00:00Z of a wire timestamp.
pub fn epoch_millis(timestamp: &str) -> Result<i64, SiemError> {
    let bad = || SiemError::BadTimestamp(timestamp.chars().take(40).collect());
    if !is_wire_timestamp(timestamp) {
        return Err(bad());
    }
    let field = |from: usize, to: usize| -> Result<i64, SiemError> {
        timestamp
            .get(from..to)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
    let (hour, minute, second, millis) = (
        field(11, 13)?,
        field(14, 16)?,
        field(17, 19)?,
        field(20, 23)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad());
    }
    // A leap second (`:60`) is accepted as the next second, as Unix time has none.
    if second > 60 {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    Ok((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(epoch_millis("1970-01-01T00:00:00.000Z").unwrap(), 0);
        // `date -u -d 2000-03-01T00:00:00Z +%s` = 951868800
        assert_eq!(
            epoch_millis("2000-03-01T00:00:00.000Z").unwrap(),
            951_868_800_000
        );
        // `date -u -d 2026-11-25T17:08:38Z +%s` = 1795626518
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
