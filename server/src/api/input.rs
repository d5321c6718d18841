//! Reading requests: query strings and JSON bodies through `serde_path_to_error` (so that an
//! error names its field), page sizes, opaque keyset cursors, and meter references.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::error::{Problem, json_error, query_error};

/// Rows per page when the request names no `limit`.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest `limit` a request may ask for.
pub const MAX_PAGE: u32 = 1_000;

/// Parses a query string into `T` (which should deny unknown fields).
pub fn query<T: DeserializeOwned>(raw: &str) -> Result<T, Problem> {
    let d = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(d).map_err(query_error)
}

/// Parses a JSON body into `T`.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.is_empty() {
        return Err(Problem::bad_field("body", "a JSON body is required"));
    }
    // Every body is an object (serde would also read a struct from an array, by position).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::bad_field("body", "the body must be a JSON object"));
    }
    let mut d = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut d).map_err(json_error)?;
    d.end().map_err(|e| {
        Problem::bad_field("body", format!("trailing characters after the JSON: {e}"))
    })?;
    Ok(value)
}

/// The page size asked for, checked.
pub fn limit(asked: Option<u32>) -> Result<i64, Problem> {
    match asked {
        None => Ok(i64::from(DEFAULT_PAGE)),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(i64::from(n)),
        Some(n) => Err(Problem::bad_field(
            "limit",
            format!("{n} is not between 1 and {MAX_PAGE}"),
        )),
    }
}

/// A cursor's content: the sort key of the last row of a page, as text. Opaque to clients
/// (base64url), so that its form may change.
pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// A cursor this API could have returned: exactly the encoding of a key it writes. Anything
/// else, however close (a forged `LTE`, which is `-1`), is a 400 and never a first page.
fn cursor_text(cursor: &str) -> Result<String, Problem> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad_cursor())?;
    String::from_utf8(bytes).map_err(|_| bad_cursor())
}

fn bad_cursor() -> Problem {
    Problem::bad_field("cursor", "not a cursor this API returned")
}

/// An id as cursors write it: positive, in its canonical decimal form.
fn cursor_id<T: std::str::FromStr + ToString>(text: &str) -> Result<T, Problem> {
    let id: T = text.parse().map_err(|_| bad_cursor())?;
    let canonical = id.to_string() == text;
    // Canonical, an integer has no leading zero but "0" itself (a UUID may start with one).
    let positive = !text.starts_with('-') && text != "0";
    if canonical && positive {
        Ok(id)
    } else {
        Err(bad_cursor())
    }
}

/// A time as cursors write it ([`time_key`]).
fn cursor_time(text: &str) -> Result<DateTime<Utc>, Problem> {
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|_| bad_cursor())?
        .to_utc();
    if time_key(t) == text {
        Ok(t)
    } else {
        Err(bad_cursor())
    }
}

/// A cursor holding an id.
pub fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, Problem> {
    cursor.map(|c| cursor_id(&cursor_text(c)?)).transpose()
}

/// A cursor holding a time.
pub fn time_cursor(cursor: Option<&str>) -> Result<Option<DateTime<Utc>>, Problem> {
    cursor.map(|c| cursor_time(&cursor_text(c)?)).transpose()
}

/// A cursor holding a date, written `YYYY-MM-DD`.
pub fn date_cursor(cursor: Option<&str>) -> Result<Option<chrono::NaiveDate>, Problem> {
    cursor
        .map(|c| {
            let text = cursor_text(c)?;
            let date: chrono::NaiveDate = text.parse().map_err(|_| bad_cursor())?;
            if date.to_string() == text {
                Ok(date)
            } else {
                Err(bad_cursor())
            }
        })
        .transpose()
}

/// A cursor holding a time and a second key (an id).
pub fn pair_cursor<T: std::str::FromStr + ToString>(
    cursor: Option<&str>,
) -> Result<Option<(DateTime<Utc>, T)>, Problem> {
    cursor
        .map(|c| {
            let text = cursor_text(c)?;
            let (t, id) = text.split_once('|').ok_or_else(bad_cursor)?;
            Ok((cursor_time(t)?, cursor_id(id)?))
        })
        .transpose()
}

/// The text form of a time in cursors and keys.
pub fn time_key(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// How a request names a meter in its path: by DevEUI (16 hex digits) or serial (14 digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterRef {
    /// A DevEUI, lowercase.
    DevEui(String),
    /// A serial number.
    Serial(String),
}

/// What [`MeterRef::parse`] accepts.
pub const METER_REF_PATTERN: &str = "^([0-9A-Fa-f]{16}|[0-9]{14})$";

impl schemars::JsonSchema for MeterRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MeterRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": METER_REF_PATTERN,
            "description": "A meter: its DevEUI (16 hex digits, any case) or its serial (14 digits)."
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl MeterRef {
    /// Reads a path segment; `field` names it in the error.
    pub fn parse(text: &str, field: &str) -> Result<MeterRef, Problem> {
        if text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(MeterRef::DevEui(text.to_ascii_lowercase()))
        } else if text.len() == 14 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(MeterRef::Serial(text.to_owned()))
        } else {
            Err(Problem::bad_field(
                field,
                format!("{text:?} is neither a DevEUI (16 hex digits) nor a serial (14 digits)"),
            ))
        }
    }

    /// A normalised form for cache keys.
    pub fn key(&self) -> String {
        match self {
            MeterRef::DevEui(d) => d.clone(),
            MeterRef::Serial(s) => s.clone(),
        }
    }
}

/// A time range [from, to) from optional bounds: `to` defaults to `now`, `from` to `default`
/// before `to`; `from` must come before `to`.
pub fn range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    default: chrono::Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Problem> {
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - default);
    if from >= to {
        return Err(Problem::bad_field("from", "must be before `to`"));
    }
    Ok((from, to))
}

/// The start of the minute after `t`: the default end of a time range, so that requests
/// without one share a cache key for a minute.
pub fn next_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(60) + 60, 0).unwrap_or(t)
}

/// Checks that an optional text parameter is one of `allowed`.
pub fn one_of(value: Option<&str>, allowed: &[&str], field: &str) -> Result<(), Problem> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(Problem::bad_field(
            field,
            format!("{v:?} is not one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Q {
        limit: Option<u32>,
        from: Option<DateTime<Utc>>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = query::<Q>("limit=ten").expect_err("not a number");
        assert_eq!(e.field.as_deref(), Some("limit"));
        let e = query::<Q>("from=yesterday").expect_err("not a time");
        assert_eq!(e.field.as_deref(), Some("from"));
        let e = query::<Q>("limt=10").expect_err("unknown");
        assert_eq!(e.field.as_deref(), Some("limt"));
        assert!(query::<Q>("limit=10&from=2026-07-01T00:00:00Z").is_ok());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(limit(None).ok(), Some(100));
        assert_eq!(limit(Some(1000)).ok(), Some(1000));
        assert_eq!(
            limit(Some(1001)).expect_err("too big").field.as_deref(),
            Some("limit")
        );
        assert!(limit(Some(0)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_named() {
        let t = Utc::now();
        let c = encode_cursor(&format!("{}|42", time_key(t)));
        let (back, id) = pair_cursor::<i64>(Some(&c)).expect("valid").expect("some");
        assert_eq!((back.timestamp_micros(), id), (t.timestamp_micros(), 42));
        assert_eq!(
            id_cursor(Some("%%%")).expect_err("bad").field.as_deref(),
            Some("cursor")
        );
        for id in [
            uuid::Uuid::new_v4(),
            uuid::Uuid::from_u128(0x0368196c_32f2_45f9_a123_ddf29b7fd4ef),
        ] {
            let c = encode_cursor(&format!("{}|{id}", time_key(t)));
            let back = pair_cursor::<uuid::Uuid>(Some(&c)).ok().flatten();
            assert_eq!(back.map(|p| p.1), Some(id));
        }
        assert_eq!(id_cursor(Some(&encode_cursor("42"))).ok(), Some(Some(42)));
        assert_eq!(
            time_cursor(Some(&encode_cursor(&time_key(t)))).ok(),
            Some(Some(
                DateTime::from_timestamp_micros(t.timestamp_micros()).expect("t")
            ))
        );
    }

    #[test]
    fn only_cursors_this_api_writes_are_accepted() {
        // `LTE` is `-1`: once read as a first page.
        for forged in ["LTE", "MA", "MDQy", "KzQy", "IDQy", "NDJ"] {
            let p = id_cursor(Some(forged)).expect_err(forged);
            assert_eq!(p.field.as_deref(), Some("cursor"), "{forged}");
        }
        let t = "2026-01-05T10:00:00.000000Z";
        assert!(time_cursor(Some(&encode_cursor(t))).is_ok());
        for forged in [
            "2026-01-05T10:00:00Z",
            "2026-01-05T11:00:00.000000+01:00",
            "x",
        ] {
            assert!(
                time_cursor(Some(&encode_cursor(forged))).is_err(),
                "{forged}"
            );
        }
        for forged in [
            format!("{t}|-1"),
            format!("{t}|"),
            format!("{t}|07"),
            t.to_owned(),
        ] {
            assert!(
                pair_cursor::<i64>(Some(&encode_cursor(&forged))).is_err(),
                "{forged}"
            );
        }
    }

    #[test]
    fn meters_are_named_by_dev_eui_or_serial() {
        assert_eq!(
            MeterRef::parse("70B3D5E75E000001", "meter").ok(),
            Some(MeterRef::DevEui("70b3d5e75e000001".into()))
        );
        assert!(matches!(
            MeterRef::parse("12261000012348", "meter"),
            Ok(MeterRef::Serial(_))
        ));
        assert!(MeterRef::parse("42", "meter").is_err());
    }
}
