//! Meter serial numbers: fourteen digits `MMYYTNNNNNNNNC` with a Luhn check digit.

use core::fmt;
use core::str::FromStr;

/// Number of decimal digits in a serial number.
pub const SERIAL_DIGITS: usize = 14;

/// The largest value a 14-digit serial can hold on the wire.
const MAX_VALUE: u64 = 99_999_999_999_999;

/// Why a text or wire value is not a valid serial number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialError {
    /// The serial does not have exactly [`SERIAL_DIGITS`] digits.
    WrongLength {
        /// Digits (or characters) found.
        found: usize,
    },
    /// A character is not a decimal digit.
    NonDigit {
        /// Position of the first offending character, counted from 0.
        position: usize,
    },
    /// The last digit does not match the Luhn check digit of the first thirteen.
    BadCheckDigit {
        /// The check digit the first thirteen digits call for.
        expected: u8,
        /// The last digit of the serial.
        found: u8,
    },
}

impl fmt::Display for SerialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialError::WrongLength { found } => write!(
                f,
                "wrong length: expected {SERIAL_DIGITS} digits, found {found}"
            ),
            SerialError::NonDigit { position } => write!(f, "non-digit at position {position}"),
            SerialError::BadCheckDigit { expected, found } => {
                write!(f, "bad check digit: expected {expected}, found {found}")
            }
        }
    }
}

impl core::error::Error for SerialError {}

/// What a meter measures, from digit 5 of its serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Medium {
    /// A gas meter.
    Gas,
    /// An electricity meter.
    Electricity,
    /// A combined gas and electricity meter.
    GasAndElectricity,
}

/// A validated meter serial number.
///
/// Structure `MMYYTNNNNNNNNC`: manufacturer code, production year, medium, sequence number,
/// Luhn check digit. A `Serial` always holds a valid check digit: it can only be built by
/// [`Serial::parse`], [`Serial::from_u64`] or [`Serial::new`].
///
/// ```
/// use firmware_protocol::Serial;
/// let serial = Serial::parse("12261000012348").unwrap();
/// assert_eq!(serial.manufacturer(), 12);
/// assert_eq!(serial.to_string(), "12261000012348");
/// assert_eq!(Serial::from_u64(serial.as_u64()), Ok(serial));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(u64);

impl Serial {
    /// Parses 14 decimal digits and checks the check digit. Problems are reported in this
    /// order: length (in characters), then the first non-digit, then the check digit.
    pub fn parse(text: &str) -> Result<Serial, SerialError> {
        let found = text.chars().count();
        if found != SERIAL_DIGITS {
            return Err(SerialError::WrongLength { found });
        }
        let bytes = text.as_bytes();
        if let Some(position) = text.chars().position(|c| !c.is_ascii_digit()) {
            return Err(SerialError::NonDigit { position });
        }
        let value = bytes
            .iter()
            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
        Serial::from_u64(value)
    }

    /// Validates a serial as it travels on the wire (a u64 holding the 14-digit number).
    pub fn from_u64(value: u64) -> Result<Serial, SerialError> {
        if value > MAX_VALUE {
            let mut digits = 0;
            let mut v = value;
            while v > 0 {
                digits += 1;
                v /= 10;
            }
            return Err(SerialError::WrongLength { found: digits });
        }
        let expected = luhn_check_digit(value / 10);
        let found = (value % 10) as u8;
        if expected != found {
            return Err(SerialError::BadCheckDigit { expected, found });
        }
        Ok(Serial(value))
    }

    /// Builds a serial from its parts, computing the check digit. Returns `None` when a part
    /// has too many digits (manufacturer and year ≤ 99, medium ≤ 9, sequence ≤ 99 999 999).
    pub fn new(manufacturer: u8, year: u8, medium: u8, sequence: u32) -> Option<Serial> {
        if manufacturer > 99 || year > 99 || medium > 9 || sequence > 99_999_999 {
            return None;
        }
        let body = u64::from(manufacturer) * 100_000_000_000
            + u64::from(year) * 1_000_000_000
            + u64::from(medium) * 100_000_000
            + u64::from(sequence);
        Some(Serial(body * 10 + u64::from(luhn_check_digit(body))))
    }

    /// The serial as the number carried on the wire.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Manufacturer code (digits 1–2).
    pub fn manufacturer(self) -> u8 {
        (self.0 / 1_000_000_000_000) as u8
    }

    /// Last two digits of the production year (digits 3–4).
    pub fn year(self) -> u8 {
        (self.0 / 10_000_000_000 % 100) as u8
    }

    /// What the meter measures (digit 5); `None` for a reserved digit.
    pub fn medium(self) -> Option<Medium> {
        match self.0 / 1_000_000_000 % 10 {
            1 => Some(Medium::Gas),
            2 => Some(Medium::Electricity),
            3 => Some(Medium::GasAndElectricity),
            _ => None,
        }
    }

    /// Sequence number within manufacturer and year (digits 6–13).
    pub fn sequence(self) -> u32 {
        (self.0 / 10 % 100_000_000) as u32
    }

    /// The check digit (digit 14).
    pub fn check_digit(self) -> u8 {
        (self.0 % 10) as u8
    }
}

/// Luhn check digit for the 13-digit body of a serial.
fn luhn_check_digit(mut body: u64) -> u8 {
    let mut sum = 0u64;
    // The rightmost body digit sits next to the check digit, so it is the first one doubled.
    let mut double = true;
    for _ in 0..SERIAL_DIGITS - 1 {
        let mut d = body % 10;
        body /= 10;
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    ((10 - sum % 10) % 10) as u8
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:014}", self.0)
    }
}

impl FromStr for Serial {
    type Err = SerialError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Serial::parse(s)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Serial {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Serial {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::json::deserialize_from_str(deserializer, "a 14-digit meter serial number")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_has_check_digit_eight() {
        assert_eq!(luhn_check_digit(1_226_100_001_234), 8);
        assert_eq!(
            Serial::parse("12261000012348").map(Serial::as_u64),
            Ok(12_261_000_012_348)
        );
    }

    #[test]
    fn parts_are_read_back() {
        let s = Serial::new(12, 26, 1, 1234).expect("parts fit");
        assert_eq!(s.to_string(), "12261000012348");
        assert_eq!(
            (
                s.manufacturer(),
                s.year(),
                s.medium(),
                s.sequence(),
                s.check_digit()
            ),
            (12, 26, Some(Medium::Gas), 1234, 8)
        );
    }

    #[test]
    fn every_single_digit_error_is_caught() {
        let good = *b"12261000012348";
        for i in 0..SERIAL_DIGITS {
            for d in b'0'..=b'9' {
                if d == good[i] {
                    continue;
                }
                let mut bad = good;
                bad[i] = d;
                let text = core::str::from_utf8(&bad).expect("ascii");
                assert!(
                    matches!(Serial::parse(text), Err(SerialError::BadCheckDigit { .. })),
                    "{text} accepted"
                );
            }
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            Serial::parse("1226100001234"),
            Err(SerialError::WrongLength { found: 13 })
        );
        assert_eq!(
            Serial::parse("122610000123489"),
            Err(SerialError::WrongLength { found: 15 })
        );
        assert_eq!(
            Serial::parse("1226100x012348"),
            Err(SerialError::NonDigit { position: 7 })
        );
        assert_eq!(
            Serial::parse(""),
            Err(SerialError::WrongLength { found: 0 })
        );
        assert_eq!(
            Serial::parse("12261000012343"),
            Err(SerialError::BadCheckDigit {
                expected: 8,
                found: 3
            })
        );
        assert_eq!(
            Serial::from_u64(u64::MAX),
            Err(SerialError::WrongLength { found: 20 })
        );
    }

    #[test]
    fn leading_zeros_are_kept() {
        let s = Serial::new(0, 5, 2, 7).expect("parts fit");
        assert_eq!(s.to_string().len(), SERIAL_DIGITS);
        assert_eq!(Serial::parse(&s.to_string()), Ok(s));
    }
}
