//! GPS time, UTC text and calendar dates, with the leap-second table.
//!
//! Meters count GPS seconds (TS003's time scale, no leap seconds); people and databases read
//! UTC. GPS = Unix − 315 964 800 + leap seconds inserted since 1980-01-06.

use core::fmt;
use core::str::FromStr;

/// Unix time of the GPS epoch, 1980-01-06T00:00:00Z.
pub const GPS_EPOCH_UNIX: i64 = 315_964_800;

/// The UTC days after which a leap second was inserted since the GPS epoch (year, month, day
/// of the day that starts with the new offset). The GPS − UTC offset is the number of entries
/// at or before a given instant: 18 since 2017-01-01.
const LEAP_DAYS_AFTER: [(i64, u8, u8); 18] = [
    (1981, 7, 1),
    (1982, 7, 1),
    (1983, 7, 1),
    (1985, 7, 1),
    (1988, 1, 1),
    (1990, 1, 1),
    (1991, 1, 1),
    (1992, 7, 1),
    (1993, 7, 1),
    (1994, 7, 1),
    (1996, 1, 1),
    (1997, 7, 1),
    (1999, 1, 1),
    (2006, 1, 1),
    (2009, 1, 1),
    (2012, 7, 1),
    (2015, 7, 1),
    (2017, 1, 1),
];

/// Unix time at which each leap-second offset takes effect (00:00:00 UTC after the leap second).
const LEAP_UNIX: [i64; 18] = {
    let mut out = [0i64; 18];
    let mut i = 0;
    while i < out.len() {
        let (y, m, d) = LEAP_DAYS_AFTER[i];
        out[i] = days_from_civil(y, m, d) * 86_400;
        i += 1;
    }
    out
};

/// GPS time at which each offset takes effect; the GPS second just before is the leap second.
const LEAP_GPS: [i64; 18] = {
    let mut out = [0i64; 18];
    let mut i = 0;
    while i < out.len() {
        out[i] = LEAP_UNIX[i] - GPS_EPOCH_UNIX + (i as i64 + 1);
        i += 1;
    }
    out
};

/// Leap seconds GPS time is ahead of UTC at the given GPS second.
pub fn leap_seconds_at_gps(gps_seconds: i64) -> i64 {
    LEAP_GPS.iter().filter(|&&g| g <= gps_seconds).count() as i64
}

/// Leap seconds GPS time is ahead of UTC at the given Unix second.
pub fn leap_seconds_at_unix(unix_seconds: i64) -> i64 {
    LEAP_UNIX.iter().filter(|&&u| u <= unix_seconds).count() as i64
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) const fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
pub(crate) const fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

const fn is_leap_year(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Number of days in a month of a year; 0 for a month outside 1–12.
pub(crate) const fn days_in_month(y: i64, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A meter clock reading: seconds since the GPS epoch, modulo 2^32 (until 2116).
///
/// Displays and parses as UTC text `YYYY-MM-DDTHH:MM:SSZ`; the leap second itself shows as
/// `23:59:60`.
///
/// ```
/// use firmware_protocol::GpsTime;
/// let t: GpsTime = "2026-07-23T10:15:30Z".parse().unwrap();
/// assert_eq!(t.to_unix(), 1_784_801_730);
/// assert_eq!(t.to_string(), "2026-07-23T10:15:30Z");
/// assert_eq!(GpsTime::from_unix(1_784_801_730), Some(t));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpsTime(pub u32);

impl GpsTime {
    /// The GPS time of a Unix time, or `None` before the GPS epoch or after 2116.
    pub fn from_unix(unix_seconds: i64) -> Option<GpsTime> {
        let gps = unix_seconds - GPS_EPOCH_UNIX + leap_seconds_at_unix(unix_seconds);
        u32::try_from(gps).ok().map(GpsTime)
    }

    /// The Unix time of this GPS time. Unix time has no leap second: the leap second maps to
    /// the same Unix second as the midnight that follows it.
    pub fn to_unix(self) -> i64 {
        let gps = i64::from(self.0);
        gps + GPS_EPOCH_UNIX - leap_seconds_at_gps(gps)
    }

    /// Whether this second is an inserted leap second (23:59:60 UTC).
    pub fn is_leap_second(self) -> bool {
        let gps = i64::from(self.0);
        LEAP_GPS.iter().any(|&g| g - 1 == gps)
    }
}

impl fmt::Display for GpsTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unix, second_of_minute_extra) = if self.is_leap_second() {
            // 23:59:60 is printed as the second after 23:59:59 of the previous day.
            (self.to_unix() - 1, 1)
        } else {
            (self.to_unix(), 0)
        };
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            y,
            m,
            d,
            secs / 3600,
            secs / 60 % 60,
            secs % 60 + second_of_minute_extra
        )
    }
}

/// Why a text is not a UTC time of the form `YYYY-MM-DDTHH:MM:SSZ` within the GPS range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeParseError;

impl fmt::Display for TimeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a UTC time YYYY-MM-DDTHH:MM:SSZ between 1980-01-06 and 2116-02-12")
    }
}

impl core::error::Error for TimeParseError {}

/// Parses `N` ASCII digits into a number.
fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
}

impl FromStr for GpsTime {
    type Err = TimeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
            return Err(TimeParseError);
        }
        let date: Date = s[..10].parse().map_err(|_| TimeParseError)?;
        let h = digits(&b[11..13]).ok_or(TimeParseError)?;
        let mi = digits(&b[14..16]).ok_or(TimeParseError)?;
        let sec = digits(&b[17..19]).ok_or(TimeParseError)?;
        if h > 23 || mi > 59 || sec > 60 {
            return Err(TimeParseError);
        }
        let midnight = days_from_civil(i64::from(date.year), date.month, date.day) * 86_400;
        let unix = midnight + h * 3600 + mi * 60 + sec.min(59);
        if sec == 60 {
            // Only a real leap second may be written as :60.
            let next_midnight = midnight + 86_400;
            let index = LEAP_UNIX.iter().position(|&u| u == next_midnight);
            return match index {
                Some(i) if h == 23 && mi == 59 => Ok(GpsTime((LEAP_GPS[i] - 1) as u32)),
                _ => Err(TimeParseError),
            };
        }
        let t = GpsTime::from_unix(unix).ok_or(TimeParseError)?;
        Ok(t)
    }
}

/// A calendar date (a meter's production date), year 0–9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// A date, or `None` when the day does not exist or the year is above 9999.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        (year <= 9999 && day >= 1 && day <= days_in_month(i64::from(year), month)).then_some(Date {
            year,
            month,
            day,
        })
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, from 1.
    pub fn day(self) -> u8 {
        self.day
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Why a text is not a date `YYYY-MM-DD` that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateParseError;

impl fmt::Display for DateParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected an existing date YYYY-MM-DD")
    }
}

impl core::error::Error for DateParseError {}

impl FromStr for Date {
    type Err = DateParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(DateParseError);
        }
        let y = digits(&b[..4]).ok_or(DateParseError)?;
        let m = digits(&b[5..7]).ok_or(DateParseError)?;
        let d = digits(&b[8..10]).ok_or(DateParseError)?;
        Date::new(y as u16, m as u8, d as u8).ok_or(DateParseError)
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Date, GpsTime};

    impl serde::Serialize for GpsTime {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    impl<'de> serde::Deserialize<'de> for GpsTime {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            crate::json::deserialize_from_str(deserializer, "a UTC time YYYY-MM-DDTHH:MM:SSZ")
        }
    }

    impl serde::Serialize for Date {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    impl<'de> serde::Deserialize<'de> for Date {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            crate::json::deserialize_from_str(deserializer, "a date YYYY-MM-DD")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn gps_epoch_is_zero() {
        assert_eq!(GpsTime(0).to_unix(), GPS_EPOCH_UNIX);
        assert_eq!(GpsTime(0).to_string(), "1980-01-06T00:00:00Z");
    }

    #[test]
    fn offset_is_eighteen_seconds_since_2017() {
        let unix_2017 = days_from_civil(2017, 1, 1) * 86_400;
        assert_eq!(leap_seconds_at_unix(unix_2017), 18);
        assert_eq!(leap_seconds_at_unix(unix_2017 - 1), 17);
        let t = GpsTime::from_unix(unix_2017).expect("in range");
        assert_eq!(i64::from(t.0), unix_2017 - GPS_EPOCH_UNIX + 18);
    }

    #[test]
    fn leap_second_prints_as_sixty_and_parses_back() {
        let leap = GpsTime((LEAP_GPS[17] - 1) as u32);
        assert!(leap.is_leap_second());
        assert_eq!(leap.to_string(), "2016-12-31T23:59:60Z");
        assert_eq!("2016-12-31T23:59:60Z".parse::<GpsTime>(), Ok(leap));
        assert_eq!(GpsTime(leap.0 - 1).to_string(), "2016-12-31T23:59:59Z");
        assert_eq!(GpsTime(leap.0 + 1).to_string(), "2017-01-01T00:00:00Z");
        assert_eq!(
            "2016-12-30T23:59:60Z".parse::<GpsTime>(),
            Err(TimeParseError)
        );
    }

    #[test]
    fn every_gps_second_around_each_leap_round_trips_through_text() {
        for &g in LEAP_GPS.iter() {
            for gps in (g - 3)..(g + 3) {
                let t = GpsTime(gps as u32);
                assert_eq!(t.to_string().parse::<GpsTime>(), Ok(t), "{t}");
            }
        }
    }

    #[test]
    fn civil_conversion_round_trips_over_centuries() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn last_gps_second_is_in_2116() {
        assert_eq!(GpsTime(u32::MAX).to_string(), "2116-02-12T06:27:57Z");
        assert_eq!(
            "2116-02-12T06:27:58Z".parse::<GpsTime>(),
            Err(TimeParseError)
        );
        assert_eq!(
            "1980-01-05T23:59:59Z".parse::<GpsTime>(),
            Err(TimeParseError)
        );
    }

    #[test]
    fn dates_must_exist() {
        assert!(Date::new(2024, 2, 29).is_some());
        assert!(Date::new(2023, 2, 29).is_none());
        assert!(Date::new(2023, 13, 1).is_none());
        assert!(Date::new(2023, 1, 0).is_none());
        assert!(Date::new(10_000, 1, 1).is_none());
        assert_eq!(
            "2024-03-05"
                .parse::<Date>()
                .map(|d| d.to_string())
                .as_deref(),
            Ok("2024-03-05")
        );
        assert_eq!("2024-3-05".parse::<Date>(), Err(DateParseError));
    }
}
