//! `meterhub meters import FILE`: meter records from CSV or JSON, every row validated, the
//! good ones registered idempotently, the bad ones reported by line and field.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::record::{FieldError, MeterRecord, validate};
use crate::storage::meters::Registered;
use crate::storage::{Error as StorageError, Store};

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Line of the file where the row starts (1-based).
    pub line: usize,
    /// The field at fault, when one is.
    pub field: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "line {}: {}: {}", self.line, field, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Meters registered for the first time.
    pub inserted: usize,
    /// Meters whose details changed.
    pub updated: usize,
    /// Meters already registered exactly so.
    pub unchanged: usize,
    /// Rows refused, with why.
    pub errors: Vec<RowError>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{e}")?;
        }
        write!(
            f,
            "{} new, {} updated, {} unchanged, {} refused",
            self.inserted,
            self.updated,
            self.unchanged,
            self.errors.len()
        )
    }
}

/// Reads, validates and registers the meters of a CSV or JSON file.
pub async fn import_file(store: &Store, path: &Path, now: DateTime<Utc>) -> Result<ImportReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || text.trim_start().starts_with('[');
    let rows = if is_json {
        parse_json(&text)?
    } else {
        parse_csv(&text)?
    };
    import_rows(store, rows, now).await
}

/// Validates and registers records given with the line each starts on.
pub async fn import_rows(
    store: &Store,
    rows: Vec<(usize, MeterRecord)>,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    // A DevEUI or serial appearing twice in one file is a mistake in the file, whichever row
    // the database would keep.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, record) in rows {
        let meter =
            match validate(&record) {
                Ok(m) => m,
                Err(fields) => {
                    report.errors.extend(fields.into_iter().map(
                        |FieldError { field, message }| RowError {
                            line,
                            field: Some(field),
                            message,
                        },
                    ));
                    continue;
                }
            };
        let mut duplicate = None;
        for (field, key) in [("devEui", &meter.dev_eui), ("serial", &meter.serial)] {
            if let Some(first) = seen.get(&format!("{field}:{key}")) {
                duplicate = Some(RowError {
                    line,
                    field: Some(field),
                    message: format!("{key} already appears on line {first}"),
                });
                break;
            }
        }
        if let Some(e) = duplicate {
            report.errors.push(e);
            continue;
        }
        seen.insert(format!("devEui:{}", meter.dev_eui), line);
        seen.insert(format!("serial:{}", meter.serial), line);
        // One transaction per row: a conflicting row must not undo the good ones.
        match store.register_meter(&meter, now).await {
            Ok(Registered::Inserted) => report.inserted += 1,
            Ok(Registered::Updated) => report.updated += 1,
            Ok(Registered::Unchanged) => report.unchanged += 1,
            Err(StorageError::Conflict(message)) => report.errors.push(RowError {
                line,
                field: Some("serial"),
                message,
            }),
            Err(e) => return Err(e).with_context(|| format!("registering line {line}")),
        }
    }
    Ok(report)
}

/// Header names are matched without case and underscores: `dev_eui`, `devEui`, `DEVEUI`.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-' && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn record_from_pairs<'a>(
    pairs: impl Iterator<Item = (&'a str, String)>,
) -> Result<MeterRecord, String> {
    let mut r = MeterRecord::default();
    for (name, value) in pairs {
        let v = Some(value);
        match normalise(name).as_str() {
            "serial" => r.serial = v,
            "deveui" => r.dev_eui = v,
            "applicationid" => r.application_id = v,
            "bodynumber" => r.body_number = v.map(serde_json::Value::String),
            "userid" => r.user_id = v,
            "region" => r.region = v,
            "usagetype" => r.usage_type = v,
            "mode" => r.mode = v,
            "productiondate" => r.production_date = v,
            "reportingintervalminutes" => {
                r.reporting_interval_minutes = v.map(serde_json::Value::String)
            }
            other => return Err(format!("unknown column {other:?}")),
        }
    }
    Ok(r)
}

/// Parses CSV with a header row.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, MeterRecord)>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader.headers().context("reading the CSV header")?.clone();
    if let Err(e) = record_from_pairs(headers.iter().map(|h| (h, String::new()))) {
        bail!("line 1: {e}");
    }
    let mut rows = Vec::new();
    for result in reader.records() {
        let record = result.context("reading the CSV")?;
        // The reader's position is where it started reading, before any blank lines it
        // skipped, so count lines up to the record's first character.
        let line = record.position().map_or(0, |p| {
            let start = usize::try_from(p.byte())
                .unwrap_or(usize::MAX)
                .min(text.len());
            let bytes = text.as_bytes();
            let first = bytes[start..]
                .iter()
                .position(|&b| b != b'\n' && b != b'\r')
                .map_or(bytes.len(), |i| start + i);
            bytes[..first].iter().filter(|&&b| b == b'\n').count() + 1
        });
        let pairs = headers.iter().zip(record.iter().map(str::to_owned));
        // The header was checked above, so every column is known.
        let r = record_from_pairs(pairs).map_err(anyhow::Error::msg)?;
        rows.push((line, r));
    }
    Ok(rows)
}

/// Parses a JSON array of objects with camelCase (or snake_case) keys. Each object is
/// reported by the line its `{` is on.
pub fn parse_json(text: &str) -> Result<Vec<(usize, MeterRecord)>> {
    let values: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(text).context("the file is not a JSON array of objects")?;
    let lines = object_lines(text);
    let mut rows = Vec::new();
    for (i, object) in values.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(0);
        let mut r = MeterRecord::default();
        for (key, value) in object {
            let text = match &value {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            };
            match normalise(&key).as_str() {
                "serial" => r.serial = text,
                "deveui" => r.dev_eui = text,
                "applicationid" => r.application_id = text,
                "bodynumber" => r.body_number = Some(value),
                "userid" => r.user_id = text,
                "region" => r.region = text,
                "usagetype" => r.usage_type = text,
                "mode" => r.mode = text,
                "productiondate" => r.production_date = text,
                "reportingintervalminutes" => r.reporting_interval_minutes = Some(value),
                other => bail!("line {line}: unknown field {other:?}"),
            }
        }
        rows.push((line, r));
    }
    Ok(rows)
}

/// The line of each top-level array element's opening brace.
fn object_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut line, mut depth, mut in_string, mut escaped) = (1, 0usize, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else {
            match c {
                '"' => in_string = true,
                '[' | '{' => {
                    if c == '{' && depth == 1 {
                        lines.push(line);
                    }
                    depth += 1;
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if c == '\n' {
            line += 1;
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_carry_their_line_and_accept_either_header_style() {
        let text = "serial,dev_eui,applicationId,body_number,user_id,region,usage_type,mode,production_date\n\
                    12261000012348,70b3d5e75e000001,0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f,1,u1,north,residential,credit,2026-03-15\n\
                    \n\
                    12261000012355,70b3d5e75e000002,0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f,2,u2,north,commercial,prepaid,2026-03-15\n";
        let rows = parse_csv(text).expect("valid CSV");
        assert_eq!(rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(rows[1].1.mode.as_deref(), Some("prepaid"));
    }

    #[test]
    fn an_unknown_csv_column_is_refused_up_front() {
        let err = parse_csv("serial,colour\n1,red\n").expect_err("unknown column");
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn json_objects_are_located_by_line() {
        let text =
            "[\n  {\"serial\": \"x\", \"note\": \"{[\\\"]}\"},\n\n  {\n \"serial\": \"y\"}\n]";
        assert_eq!(object_lines(text), [2, 4]);
    }
}
