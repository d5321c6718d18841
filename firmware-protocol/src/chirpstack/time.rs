//! Time on the wire: `google.protobuf.Timestamp` and `google.protobuf.Duration` as ChirpStack
//! writes them, and the two time formats of the Semtech UDP protocol.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::json::deserialize_from_str;

/// A point in time, written as ChirpStack writes `google.protobuf.Timestamp`.
///
/// Output is RFC 3339 in UTC with a `+00:00` offset (never `Z`) and 0, 3, 6 or 9 fractional
/// digits, the fewest that keep every non-zero digit (chrono's `to_rfc3339`). Input is any
/// RFC 3339 text (`Z` or any offset), converted to UTC.
///
/// ```
/// use firmware_protocol::chirpstack::Timestamp;
///
/// let t: Timestamp = "2026-07-23T12:15:30.120Z".parse()?;
/// assert_eq!(t.to_string(), "2026-07-23T12:15:30.120+00:00");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// The current time of the system clock.
    pub fn now() -> Self {
        Self(Utc::now())
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Self(time)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(time: Timestamp) -> Self {
        time.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, false))
    }
}

impl FromStr for Timestamp {
    type Err = chrono::ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(text).map(|time| Self(time.with_timezone(&Utc)))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_from_str(deserializer, "an RFC 3339 timestamp")
    }
}

/// A non-negative span of time, written as proto3 JSON writes `google.protobuf.Duration`:
/// seconds with 0, 3, 6 or 9 fractional digits and an `s` suffix (`"1s"`, `"1.500s"`,
/// `"0.000001s"`).
///
/// Input takes 0 to 9 fractional digits, so `"1.5s"` reads as 1.5 s (and is written back as
/// `"1.500s"`). Negative durations, which proto3 allows, are rejected: none of the fields
/// ChirpStack fills (RX delays, time since the GPS epoch) can be negative, and a
/// [`core::time::Duration`] is what the rest of the code computes with.
///
/// ```
/// use firmware_protocol::chirpstack::Duration;
///
/// let d: Duration = "1.500s".parse()?;
/// assert_eq!(d.0, core::time::Duration::from_millis(1500));
/// assert_eq!(d.to_string(), "1.500s");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub core::time::Duration);

impl From<core::time::Duration> for Duration {
    fn from(duration: core::time::Duration) -> Self {
        Self(duration)
    }
}

impl From<Duration> for core::time::Duration {
    fn from(duration: Duration) -> Self {
        duration.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{seconds}s")
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{seconds}.{:03}s", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            write!(f, "{seconds}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{seconds}.{nanos:09}s")
        }
    }
}

/// Why a text is not a proto3 JSON duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseDurationError;

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a non-negative duration like \"1s\" or \"1.500s\"")
    }
}

impl core::error::Error for ParseDurationError {}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = text.strip_suffix('s').ok_or(ParseDurationError)?;
        let (seconds, fraction) = number.split_once('.').unwrap_or((number, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        // `u64::from_str` would also take a sign, which the format does not allow.
        if seconds.is_empty() || !all_digits(seconds) || !all_digits(fraction) {
            return Err(ParseDurationError);
        }
        if (number.contains('.') && fraction.is_empty()) || fraction.len() > 9 {
            return Err(ParseDurationError);
        }
        let seconds: u64 = seconds.parse().map_err(|_| ParseDurationError)?;
        let mut nanos: u32 = 0;
        for digit in fraction.bytes().chain(core::iter::repeat(b'0')).take(9) {
            nanos = nanos * 10 + u32::from(digit - b'0');
        }
        Ok(Self(core::time::Duration::new(seconds, nanos)))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_from_str(deserializer, "a duration like \"1.500s\"")
    }
}

/// A Semtech UDP `rxpk.time`: UTC with microseconds and `Z`
/// (`"2026-07-23T10:15:30.123456Z"`), the packet forwarder's "compact" ISO 8601.
///
/// Input is any RFC 3339 text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompactTime(pub DateTime<Utc>);

impl fmt::Display for CompactTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl FromStr for CompactTime {
    type Err = chrono::ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(|Timestamp(time)| Self(time))
    }
}

impl Serialize for CompactTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CompactTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_from_str(deserializer, "an RFC 3339 timestamp")
    }
}

/// A Semtech UDP `stat.time`: UTC to the second with a `GMT` suffix
/// (`"2026-07-23 10:15:00 GMT"`), the packet forwarder's "expanded" format.
///
/// Input is that format or any RFC 3339 text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExpandedTime(pub DateTime<Utc>);

/// `strftime` pattern of [`ExpandedTime`].
const EXPANDED_FORMAT: &str = "%Y-%m-%d %H:%M:%S GMT";

impl fmt::Display for ExpandedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(EXPANDED_FORMAT))
    }
}

impl FromStr for ExpandedTime {
    type Err = chrono::ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match NaiveDateTime::parse_from_str(text, EXPANDED_FORMAT) {
            Ok(time) => Ok(Self(time.and_utc())),
            Err(expanded_error) => text
                .parse()
                .map(|Timestamp(time)| Self(time))
                .map_err(|_| expanded_error),
        }
    }
}

impl Serialize for ExpandedTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ExpandedTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_from_str(deserializer, "a time like \"2026-07-23 10:15:00 GMT\"")
    }
}
