//! RFC 3339 times, from and to milliseconds since the epoch (the API's
//! times and the cluster status'), and RFC 5322 dates (mail headers).

/// `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// `ms` as an RFC 5322 date in UTC: `Fri, 04 Dec 2026 18:30:00 +0000`.
pub fn rfc5322(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[m as usize - 1],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses milliseconds, `YYYY-MM-DD`, or an RFC 3339 date-time
/// (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, `T`/`Z` in either case). Times
/// before 1970 are refused.
pub fn parse_time(s: &str) -> Option<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Some(ms);
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| {
        let x = s.get(r)?;
        x.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| x.parse::<u32>().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)? as i64, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if b.len() > 10 {
        if b.len() < 20 || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        ms += (hh as i64 * 3600 + mm as i64 * 60 + ss as i64) * 1000;
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            let f: u32 = format!("{:0<3}", &frac[..n]).get(..3)?.parse().ok()?;
            ms += f as i64;
            rest = &frac[n..];
        }
        ms -= match rest.as_bytes() {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (oh, om) = (num(s.len() - 5..s.len() - 3)?, num(s.len() - 2..s.len())?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = (oh as i64 * 60 + om as i64) * 60_000;
                if *sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return None,
        };
    }
    u64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322(1_795_000_000_000),
            "Wed, 18 Nov 2026 11:06:40 +0000"
        );
        assert_eq!(rfc5322(951_782_400_123), "Tue, 29 Feb 2000 00:00:00 +0000");
        for ms in [0, 951_782_400_123, 1_795_000_000_000, 4_102_444_799_999] {
            assert_eq!(parse_time(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_time("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_time("2000-13-01"), None);
        assert_eq!(parse_time("yesterday"), None);
        // Offsets and lower case, as RFC 3339 allows.
        assert_eq!(
            parse_time("2000-02-29T01:30:00+01:30"),
            Some(951_782_400_000)
        );
        assert_eq!(
            parse_time("2000-02-28t23:00:00.5-01:00"),
            Some(951_782_400_500)
        );
        assert_eq!(parse_time("2000-02-29T00:00:00z"), Some(951_782_400_000));
        for bad in [
            "2000-02-29T00:00:00",
            "2000-02-29T00:00:00+1:00",
            "2000-02-29T00:00:00.Z",
            "2000-02-29 00:00:00Z",
            "2000-02-29T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "+000-01-01",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
