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

/// Milliseconds since 1970-01-01T00:00:00Z of a wire timestamp; `None` if `s` is not one or
/// names no calendar time. A leap second (`:60`) counts as the next second, as Unix time has
/// none.
pub fn wire_timestamp_millis(s: &str) -> Option<i64> {
    if !is_wire_timestamp(s) {
        return None;
    }
    let number = |from: usize, to: usize| s.get(from..to)?.parse::<i64>().ok();
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let millis = number(20, 23)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(wire_timestamp_millis("1970-01-01T00:00:00.000Z"), Some(0));
        // `date -u -d 2000-03-01T00:00:00Z +%s` = 951868800
        assert_eq!(
            wire_timestamp_millis("2000-03-01T00:00:00.000Z"),
            Some(951_868_800_000)
        );
        // `date -u -d 2026-11-25T17:08:38Z +%s` = 1795626518
        assert_eq!(
            wire_timestamp_millis("2026-11-25T17:08:38.634Z"),
            Some(1_795_626_518_634)
        );
        for bad in [
            "2026-11-25T17:08:38Z",
            "2026-13-25T17:08:38.000Z",
            "",
            "2026-11-25T24:00:00.000Z",
        ] {
            assert_eq!(wire_timestamp_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn accepts_only_the_wire_shape() {
        assert!(is_wire_timestamp("2026-11-25T17:08:38.634Z"));
        assert!(!is_wire_timestamp("2026-11-25T17:08:38Z"));
        assert!(!is_wire_timestamp("2026-11-25T17:08:38.634+00:00"));
        assert!(!is_wire_timestamp("2026-11-25 17:08:38.634Z"));
    }
}
