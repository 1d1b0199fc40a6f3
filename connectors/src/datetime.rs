//! Dates, times and timestamps as connectors carry them — days and
//! microseconds since the Unix epoch — and as text, both ways, over the
//! whole range PostgreSQL has: years past 9999, years before Christ, and
//! its `infinity` and `-infinity`.
//!
//! Two text forms: ISO 8601 for JSON (astronomical years, `-0043` is
//! 44 BC, and a sign before years of five digits or more, as ISO's
//! expanded representation writes them), and PostgreSQL's own output and
//! input (`0044-03-15 BC`, `10000-01-01`). Infinity is kept the way
//! PostgreSQL keeps it internally: the largest and smallest value of the
//! type (`i32::MAX`/`i32::MIN` days, `i64::MAX`/`i64::MIN` microseconds).
//!
//! Hand-written rather than through chrono: chrono's dates end at year
//! 262,143 and its formats print `+10000` and `-0043`, which PostgreSQL
//! refuses; the arithmetic needed is two small functions
//! ([`days_from_civil`], [`civil_from_days`]).

/// A date meaning `infinity` (PostgreSQL's `DATEVAL_NOEND`).
pub const DATE_INFINITY: i32 = i32::MAX;
/// A date meaning `-infinity` (PostgreSQL's `DATEVAL_NOBEGIN`).
pub const DATE_NEG_INFINITY: i32 = i32::MIN;
/// A timestamp meaning `infinity` (PostgreSQL's `DT_NOEND`).
pub const TIMESTAMP_INFINITY: i64 = i64::MAX;
/// A timestamp meaning `-infinity` (PostgreSQL's `DT_NOBEGIN`).
pub const TIMESTAMP_NEG_INFINITY: i64 = i64::MIN;

const DAY_US: i64 = 86_400_000_000;

/// Howard Hinnant's `civil_from_days`: (astronomical year, month, day)
/// of a day number (days since 1970-01-01, proleptic Gregorian).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day number of a civil date (astronomical year; the inverse of
/// [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since the epoch as ISO 8601 (`1970-01-01`, `-0043-03-15`,
/// `+10000-01-01`); `infinity` and `-infinity` as those words.
pub fn date_text(days: i32) -> String {
    match days {
        DATE_INFINITY => "infinity".into(),
        DATE_NEG_INFINITY => "-infinity".into(),
        _ => {
            let (y, m, d) = civil_from_days(i64::from(days));
            let year = match y {
                0..=9999 => format!("{y:04}"),
                10_000.. => format!("+{y}"),
                _ => format!("-{:04}", y.unsigned_abs()),
            };
            format!("{year}-{m:02}-{d:02}")
        }
    }
}

/// Microseconds since midnight as `HH:MM:SS.ffffff` (`24:00:00.000000`
/// for the end of the day, which PostgreSQL's `time` allows).
pub fn time_text(us: i64) -> String {
    let s = us.div_euclid(1_000_000);
    format!("{:02}:{:02}:{:02}.{:06}", s / 3600, s / 60 % 60, s % 60, us.rem_euclid(1_000_000))
}

/// Microseconds since the epoch as RFC 3339 in UTC (years as
/// [`date_text`] writes them); the infinities as words.
pub fn timestamp_text(us: i64) -> String {
    match us {
        TIMESTAMP_INFINITY => "infinity".into(),
        TIMESTAMP_NEG_INFINITY => "-infinity".into(),
        _ => {
            let (days, rest) = split_day(us);
            format!("{}T{}Z", date_text(days), time_text(rest))
        }
    }
}

/// (days, microseconds into the day) of a timestamp.
fn split_day(us: i64) -> (i32, i64) {
    let days = us.div_euclid(DAY_US);
    // |days| < 2^31 for any i64 of microseconds (2^63 / 8.64e10 ≈ 1.07e8).
    (i32::try_from(days).unwrap_or(if days < 0 { i32::MIN + 1 } else { i32::MAX - 1 }), us.rem_euclid(DAY_US))
}

/// Whether PostgreSQL's `date` holds `days` (4714-11-24 BC to
/// 5874897-12-31, and the infinities).
pub fn pg_date_in_range(days: i32) -> bool {
    let days = i64::from(days);
    days == i64::from(DATE_INFINITY)
        || days == i64::from(DATE_NEG_INFINITY)
        || (days_from_civil(-4713, 11, 24)..=days_from_civil(5_874_897, 12, 31)).contains(&days)
}

/// Whether PostgreSQL's `timestamp` holds `us` (4714-11-24 BC to the end
/// of 294276 AD, and the infinities).
pub fn pg_timestamp_in_range(us: i64) -> bool {
    us == TIMESTAMP_INFINITY || us == TIMESTAMP_NEG_INFINITY || us >= days_from_civil(-4713, 11, 24) * DAY_US
}

/// A date as PostgreSQL reads it (`2024-01-01`, `0044-03-15 BC`,
/// `infinity`).
pub fn pg_date_text(days: i32) -> String {
    match days {
        DATE_INFINITY => "infinity".into(),
        DATE_NEG_INFINITY => "-infinity".into(),
        _ => {
            let (y, m, d) = civil_from_days(i64::from(days));
            if y <= 0 { format!("{:04}-{m:02}-{d:02} BC", 1 - y) } else { format!("{y:04}-{m:02}-{d:02}") }
        }
    }
}

/// A timestamp as PostgreSQL reads it, in UTC (`+00` after the time when
/// `zoned`, and ` BC` last for years before Christ).
pub fn pg_timestamp_text(us: i64, zoned: bool) -> String {
    match us {
        TIMESTAMP_INFINITY => "infinity".into(),
        TIMESTAMP_NEG_INFINITY => "-infinity".into(),
        _ => {
            let (days, rest) = split_day(us);
            let (y, m, d) = civil_from_days(i64::from(days));
            let zone = if zoned { "+00" } else { "" };
            let (year, era) = if y <= 0 { (1 - y, " BC") } else { (y, "") };
            format!("{year:04}-{m:02}-{d:02} {}{zone}{era}", time_text(rest))
        }
    }
}

/// A date in PostgreSQL's ISO output (`YYYY-MM-DD`, with ` BC` after a
/// year before Christ) or ISO 8601 (astronomical, signed years), or
/// `infinity`/`-infinity`, as days since the epoch.
pub fn parse_date(text: &str) -> Option<i32> {
    let text = text.trim();
    match text {
        "infinity" | "+infinity" => return Some(DATE_INFINITY),
        "-infinity" => return Some(DATE_NEG_INFINITY),
        _ => {}
    }
    let (text, bc) = strip_era(text);
    let mut cursor = Cursor(text.as_bytes());
    let days = cursor.date(bc)?;
    if !cursor.0.is_empty() {
        return None;
    }
    i32::try_from(days).ok().filter(|d| *d != DATE_INFINITY && *d != DATE_NEG_INFINITY)
}

/// `HH:MM[:SS[.ffffff]]` as microseconds since midnight; `24:00:00` is
/// the end of the day.
pub fn parse_time(text: &str) -> Option<i64> {
    let mut cursor = Cursor(text.trim().as_bytes());
    let us = cursor.time()?;
    cursor.0.is_empty().then_some(us)
}

/// A timestamp in PostgreSQL's ISO output (`2024-01-01 12:00:00.5+00`,
/// `0044-03-15 12:00:00 BC`) or RFC 3339 (`2024-01-01T12:00:00.5Z`, signed
/// years), or `infinity`/`-infinity`, as microseconds since the epoch in
/// UTC. A zone offset is applied when present; without one the time is
/// taken as UTC. `None` when it is malformed or out of the `i64` range.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    match text {
        "infinity" | "+infinity" => return Some(TIMESTAMP_INFINITY),
        "-infinity" => return Some(TIMESTAMP_NEG_INFINITY),
        _ => {}
    }
    let (text, bc) = strip_era(text);
    let mut cursor = Cursor(text.as_bytes());
    let days = cursor.date(bc)?;
    let time = if cursor.eat(b' ') || cursor.eat(b'T') || cursor.eat(b't') { cursor.time()? } else { 0 };
    let offset_s = cursor.offset()?;
    if !cursor.0.is_empty() {
        return None;
    }
    let us = days.checked_mul(DAY_US)?.checked_add(time)?.checked_sub(offset_s.checked_mul(1_000_000)?)?;
    (us != TIMESTAMP_INFINITY && us != TIMESTAMP_NEG_INFINITY).then_some(us)
}

fn strip_era(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text.strip_suffix(" AD").unwrap_or(text), false),
    }
}

/// A small parser over ASCII text.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn eat(&mut self, b: u8) -> bool {
        if self.0.first() == Some(&b) {
            self.0 = &self.0[1..];
            true
        } else {
            false
        }
    }

    /// At least `min` digits (at most 18), as a number and their count.
    fn digits(&mut self, min: usize) -> Option<(i64, usize)> {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if n < min || n > 18 {
            return None;
        }
        let value = self.0[..n].iter().fold(0_i64, |acc, b| acc * 10 + i64::from(b - b'0'));
        self.0 = &self.0[n..];
        Some((value, n))
    }

    fn two(&mut self) -> Option<u32> {
        let (v, n) = self.digits(2)?;
        if n != 2 {
            return None;
        }
        u32::try_from(v).ok()
    }

    /// `[±]YYYY-MM-DD` as days; `bc` takes the year as before Christ.
    fn date(&mut self, bc: bool) -> Option<i64> {
        let negative = self.eat(b'-');
        if !negative {
            self.eat(b'+');
        }
        let (year, _) = self.digits(4)?;
        if !self.eat(b'-') {
            return None;
        }
        let m = self.two()?;
        if !self.eat(b'-') {
            return None;
        }
        let d = self.two()?;
        let year = match (negative, bc) {
            (false, false) => year,
            (true, false) => -year,
            // 1 BC is year 0.
            (false, true) if year > 0 => 1 - year,
            _ => return None,
        };
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(year, m) {
            return None;
        }
        Some(days_from_civil(year, m, d))
    }

    /// `HH:MM[:SS[.f…]]` as microseconds (fractions past six digits are
    /// refused rather than rounded).
    fn time(&mut self) -> Option<i64> {
        let h = i64::from(self.two()?);
        if !self.eat(b':') {
            return None;
        }
        let m = i64::from(self.two()?);
        let (mut s, mut frac) = (0, 0);
        if self.eat(b':') {
            s = i64::from(self.two()?);
            if self.eat(b'.') {
                let (f, n) = self.digits(1)?;
                if n > 6 {
                    return None;
                }
                frac = f * 10_i64.pow(u32::try_from(6 - n).ok()?);
            }
        }
        let us = ((h * 60 + m) * 60 + s) * 1_000_000 + frac;
        (m < 60 && s < 60 && us <= DAY_US).then_some(us)
    }

    /// `Z`, `±HH`, `±HH:MM`, `±HHMM`, `±HH:MM:SS` or nothing, as seconds
    /// east of UTC.
    fn offset(&mut self) -> Option<i64> {
        if self.eat(b'Z') || self.eat(b'z') || self.0.is_empty() {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return Some(0);
        };
        let h = i64::from(self.two()?);
        let colon = self.eat(b':');
        let m = if colon || self.0.first().is_some_and(u8::is_ascii_digit) { i64::from(self.two()?) } else { 0 };
        let s = if self.eat(b':') { i64::from(self.two()?) } else { 0 };
        Some(sign * (h * 3600 + m * 60 + s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_civil_dates() {
        for days in [-719_468, -1, 0, 1, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(19_723), "2024-01-01");
        assert_eq!(timestamp_text(1_704_067_200_000_001), "2024-01-01T00:00:00.000001Z");
    }

    #[test]
    fn postgres_text_covers_its_whole_range() {
        for (text, pg) in [
            ("0044-03-15 BC", "0044-03-15 BC"),
            ("4713-01-01 BC", "4713-01-01 BC"),
            ("0001-01-01", "0001-01-01"),
            ("0001-12-31 BC", "0001-12-31 BC"),
            ("10000-01-01", "10000-01-01"),
            ("5874897-12-31", "5874897-12-31"),
            ("infinity", "infinity"),
            ("-infinity", "-infinity"),
        ] {
            let days = parse_date(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(pg_date_text(days), pg);
            assert_eq!(parse_date(&date_text(days)), Some(days), "ISO text of {text} reads back");
        }
        assert_eq!(date_text(parse_date("0001-12-31 BC").expect("1 BC")), "0000-12-31");
        assert_eq!(date_text(parse_date("10000-01-01").expect("10000")), "+10000-01-01");
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("0000-01-01 BC"), None);
        assert!(pg_date_in_range(parse_date("4714-11-24 BC").expect("first")));
        assert!(!pg_date_in_range(parse_date("4714-11-23 BC").expect("before")));
        assert!(pg_date_in_range(parse_date("5874897-12-31").expect("last")));
        assert!(!pg_date_in_range(parse_date("5874898-01-01").expect("after")));
        assert!(!pg_timestamp_in_range(parse_timestamp("4714-11-23 23:59:59 BC").expect("before")));

        for (text, pg_tz) in [
            ("2024-01-01 00:00:01.5+00", "2024-01-01 00:00:01.500000+00"),
            ("0044-03-15 12:00:01.5+00 BC", "0044-03-15 12:00:01.500000+00 BC"),
            ("10000-01-01 00:00:00+00", "10000-01-01 00:00:00.000000+00"),
            ("2024-06-01 02:00:00+02", "2024-06-01 00:00:00.000000+00"),
            ("2024-06-01 02:00:00+05:30:15", "2024-05-31 20:29:45.000000+00"),
            ("infinity", "infinity"),
            ("-infinity", "-infinity"),
        ] {
            let us = parse_timestamp(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(pg_timestamp_text(us, true), pg_tz);
            assert_eq!(parse_timestamp(&timestamp_text(us)), Some(us), "RFC 3339 of {text} reads back");
        }
        assert_eq!(parse_timestamp("2024-01-01T00:00:00.000001Z"), Some(1_704_067_200_000_001));
        assert_eq!(pg_timestamp_text(0, false), "1970-01-01 00:00:00.000000");
        assert_eq!(parse_timestamp("294276-12-31 23:59:59.999999"), None, "past what microseconds since 1970 hold");
    }

    #[test]
    fn the_end_of_the_day_is_a_time() {
        assert_eq!(parse_time("24:00:00"), Some(DAY_US));
        assert_eq!(time_text(DAY_US), "24:00:00.000000");
        assert_eq!(parse_time("24:00:01"), None);
        assert_eq!(parse_time("12:34:56.789"), Some(45_296_789_000));
        assert_eq!(parse_time("12:34"), Some(45_240_000_000));
        assert_eq!(parse_time("12:34:56.1234567"), None, "never rounded");
    }
}
