//! ISO 8601 timestamps with a mandatory time zone, as `scheduled_at` and `schedule` take them
//! (`2026-11-26T22:30:00+01:00`, `...Z`, optional fractional seconds, `T` or a space).

use std::time::{Duration, SystemTime};

/// A point in time as the client wrote it and as seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Timestamp {
    /// The client's text, stored as such in the `failover` key.
    pub text: String,
    pub at: SystemTime,
}

impl Timestamp {
    /// Parses `text`; the reason names what is wrong (a missing time zone is refused).
    pub fn parse(text: &str) -> Result<Self, String> {
        let at = parse_iso8601(text.trim())?;
        Ok(Timestamp {
            text: text.trim().to_owned(),
            at,
        })
    }
}

fn parse_iso8601(text: &str) -> Result<SystemTime, String> {
    let invalid = || format!("{text:?} is not an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SS+HH:MM)");
    let bytes = text.as_bytes();
    if bytes.len() < 19 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(invalid());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = text.get(range).ok_or_else(invalid)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        part.parse().map_err(|_| invalid())
    };
    if bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' || bytes[16] != b':' {
        return Err(invalid());
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(invalid());
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let padded: String = fraction[..digits.min(9)]
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        nanos = padded.parse().map_err(|_| invalid())?;
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "" => {
            return Err(format!(
                "{text:?} has no time zone; a time zone is mandatory"
            ));
        }
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(invalid()),
            };
            let zone = &rest[1..];
            let (hours, minutes) = match zone.len() {
                5 if zone.as_bytes()[2] == b':' => (&zone[0..2], &zone[3..5]),
                4 => (&zone[0..2], &zone[2..4]),
                2 => (zone, "00"),
                _ => return Err(invalid()),
            };
            let hours: i64 = hours.parse().map_err(|_| invalid())?;
            let minutes: i64 = minutes.parse().map_err(|_| invalid())?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    let seconds = u64::try_from(seconds).map_err(|_| invalid())?;
    Ok(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_zone_and_refuses_without() {
        let epoch = |text: &str| {
            Timestamp::parse(text).map(|t| {
                t.at.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
            })
        };
        assert_eq!(epoch("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(epoch("2026-11-26T22:30:00+00:00"), Ok(1_795_732_200));
        assert_eq!(epoch("2026-11-26T23:30:00+01:00"), Ok(1_795_732_200));
        assert_eq!(epoch("2026-11-26 22:30:00.250Z"), Ok(1_795_732_200));
        assert!(epoch("2026-11-26T22:30:00").is_err_and(|e| e.contains("time zone")));
        assert!(epoch("tomorrow").is_err());
        assert!(epoch("2026-13-26T22:30:00Z").is_err());
    }
}
