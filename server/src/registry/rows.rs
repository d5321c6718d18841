//! Rows of a meters file: CSV records and JSON objects turned into [`MeterRecord`]s, each with
//! the line it starts on and whatever is wrong with its shape (an unknown field, a short row),
//! so that one bad row is that row's error and never the whole file's.

use std::fmt;

use super::record::MeterRecord;

/// The fields of a record, as an import file or a request names them.
pub const FIELDS: [&str; 12] = [
    "serial",
    "devEui",
    "applicationId",
    "bodyNumber",
    "userId",
    "region",
    "usageType",
    "mode",
    "productionDate",
    "reportingIntervalMinutes",
    "joinEui",
    "appKey",
];

/// Fields a record must have (every other one is optional).
const REQUIRED: [&str; 9] = [
    "serial",
    "devEui",
    "applicationId",
    "bodyNumber",
    "userId",
    "region",
    "usageType",
    "mode",
    "productionDate",
];

/// Something wrong with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Line of the file where the row starts (1-based).
    pub line: usize,
    /// The field at fault, when one is (as the file names it for an unknown one).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: {}: {}", self.line, field, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// One row as read: its line, the record, and what is wrong with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Line of the file where the row starts (1-based).
    pub line: usize,
    /// The record's fields as given; `None` when the row's shape hides them (a CSV row with
    /// more or fewer fields than the header, a JSON value that is not an object).
    pub record: Option<MeterRecord>,
    /// Shape errors (unknown field, wrong number of fields, not an object); field values are
    /// checked later, by [`super::validate`].
    pub errors: Vec<RowError>,
}

impl Row {
    fn new(line: usize) -> Row {
        Row {
            line,
            record: None,
            errors: Vec::new(),
        }
    }

    /// A row that is only an error, with no record.
    pub fn refused(line: usize, message: String) -> Row {
        let mut row = Row::new(line);
        row.refuse(None, message);
        row
    }

    fn refuse(&mut self, field: Option<&str>, message: impl Into<String>) {
        self.errors.push(RowError {
            line: self.line,
            field: field.map(str::to_owned),
            message: message.into(),
        });
    }
}

/// A field named as the file names it, matched without case, `_`, `-` or spaces:
/// `dev_eui`, `devEui` and `DEVEUI` are the same field.
pub fn field_of(name: &str) -> Option<&'static str> {
    let key: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-' && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    FIELDS.into_iter().find(|f| f.to_ascii_lowercase() == key)
}

fn unknown_field_message() -> String {
    format!("unknown field; expected {}", FIELDS.join(", "))
}

/// Sets one field of a record from a JSON value; a wrong kind of value is that field's error.
fn set(
    record: &mut MeterRecord,
    field: &'static str,
    value: serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    // Numbers are kept as JSON for the integer fields, so that `1.5` is refused there.
    match field {
        "bodyNumber" => record.body_number = Some(value),
        "reportingIntervalMinutes" => record.reporting_interval_minutes = Some(value),
        _ => {
            let text = match value {
                Value::Null => None,
                Value::String(s) => Some(s),
                // A serial or a body number written as a JSON number is still that text.
                Value::Number(n) => Some(n.to_string()),
                other => return Err(format!("must be a string, got {other}")),
            };
            let slot = match field {
                "serial" => &mut record.serial,
                "devEui" => &mut record.dev_eui,
                "applicationId" => &mut record.application_id,
                "userId" => &mut record.user_id,
                "region" => &mut record.region,
                "usageType" => &mut record.usage_type,
                "mode" => &mut record.mode,
                "productionDate" => &mut record.production_date,
                "joinEui" => &mut record.join_eui,
                "appKey" => &mut record.app_key,
                _ => unreachable!("every field of FIELDS is handled"),
            };
            *slot = text;
        }
    }
    Ok(())
}

/// The columns of a CSV header row, each a known field, none twice, every required one
/// present: a header that is wrong makes every row wrong the same way, so it is refused
/// with one message rather than one per row.
#[derive(Debug, Clone)]
pub struct Columns(Vec<&'static str>);

impl Columns {
    /// Checks a header row (line 1).
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Columns, String> {
        let mut columns = Vec::new();
        for name in names {
            let field = field_of(name).ok_or_else(|| {
                format!(
                    "line 1: unknown column {name:?}; expected {}",
                    FIELDS.join(", ")
                )
            })?;
            if columns.contains(&field) {
                return Err(format!("line 1: column {field} appears twice"));
            }
            columns.push(field);
        }
        let missing: Vec<_> = REQUIRED
            .into_iter()
            .filter(|f| !columns.contains(f))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "line 1: the header has no column {}",
                missing.join(", ")
            ));
        }
        Ok(Columns(columns))
    }

    /// A data row of `fields` starting on `line`. A row with more or fewer fields than the
    /// header is refused whole: its values cannot be matched to columns.
    pub fn row<'a>(
        &self,
        line: usize,
        fields: impl ExactSizeIterator<Item = Result<&'a str, std::str::Utf8Error>>,
    ) -> Row {
        if fields.len() != self.0.len() {
            return Row::refused(
                line,
                format!(
                    "has {} fields where the header has {}",
                    fields.len(),
                    self.0.len()
                ),
            );
        }
        let mut row = Row::new(line);
        let mut record = MeterRecord::default();
        for (field, value) in self.0.iter().zip(fields) {
            match value {
                Ok(v) => {
                    let v = serde_json::Value::String(v.trim().to_owned());
                    if let Err(e) = set(&mut record, field, v) {
                        row.refuse(Some(field), e);
                    }
                }
                Err(_) => row.refuse(Some(field), "is not valid UTF-8"),
            }
        }
        row.record = Some(record);
        row
    }
}

/// A JSON value of an array or of an NDJSON line, starting on `line`: an object with known
/// fields (in any of the spellings [`field_of`] accepts).
pub fn json_row(line: usize, value: serde_json::Value) -> Row {
    let serde_json::Value::Object(object) = value else {
        return Row::refused(line, format!("is not an object: {value}"));
    };
    let mut row = Row::new(line);
    let mut record = MeterRecord::default();
    for (key, value) in object {
        match field_of(&key) {
            Some(field) => {
                if let Err(e) = set(&mut record, field, value) {
                    row.refuse(Some(field), e);
                }
            }
            None => row.refuse(Some(&key), unknown_field_message()),
        }
    }
    row.record = Some(record);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_matched_in_any_spelling() {
        assert_eq!(field_of("dev_eui"), Some("devEui"));
        assert_eq!(field_of("DEVEUI"), Some("devEui"));
        assert_eq!(field_of("Production Date"), Some("productionDate"));
        assert_eq!(field_of("colour"), None);
    }

    #[test]
    fn a_header_must_name_every_required_column_once() {
        assert!(Columns::parse(FIELDS).is_ok());
        assert!(Columns::parse(REQUIRED).is_ok());
        let err = Columns::parse(["serial", "colour"]).expect_err("unknown");
        assert!(err.contains("\"colour\""), "{err}");
        let err = Columns::parse(["serial", "Serial"]).expect_err("twice");
        assert_eq!(err, "line 1: column serial appears twice");
        let err = Columns::parse(REQUIRED[..8].iter().copied()).expect_err("missing");
        assert_eq!(err, "line 1: the header has no column productionDate");
    }

    #[test]
    fn a_short_csv_row_is_that_rows_error() {
        let columns = Columns::parse(REQUIRED).expect("header");
        let row = columns.row(7, ["1", "2"].into_iter().map(Ok));
        assert_eq!(
            row.errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["line 7: has 2 fields where the header has 9"]
        );
    }

    #[test]
    fn every_unknown_json_field_and_wrong_kind_of_value_is_named() {
        let row = json_row(
            3,
            serde_json::json!({"serial": 12261000012348u64, "colour": "red", "userId": {"a": 1},
                "size": 2, "body_number": 1.5}),
        );
        let record = row.record.as_ref().expect("an object");
        assert_eq!(record.serial.as_deref(), Some("12261000012348"));
        assert_eq!(record.body_number, Some(serde_json::json!(1.5)));
        let fields: Vec<_> = row.errors.iter().filter_map(|e| e.field.clone()).collect();
        assert_eq!(fields, ["colour", "size", "userId"]);
        assert_eq!(
            json_row(4, serde_json::json!([1])).errors[0].to_string(),
            "line 4: is not an object: [1]"
        );
    }
}
