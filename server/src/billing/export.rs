//! A billing run's export: one row per meter and period, as CSV (units in the column names)
//! or as a JSON array, written row by row as meters are read.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::record::ConsumptionRecord;
use crate::storage::billing::BilledMeter;

/// A meter's row of an export: who, then the period's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ConsumptionExportRow")]
pub struct ExportRecord {
    /// The meter's DevEUI.
    pub dev_eui: String,
    /// The meter's serial.
    pub serial: String,
    /// Its region.
    pub region: String,
    /// Its usage type.
    pub usage_type: String,
    /// The figures.
    #[serde(flatten)]
    pub consumption: ConsumptionRecord,
}

impl ExportRecord {
    /// The row of `meter` for one period.
    pub fn new(meter: &BilledMeter, consumption: ConsumptionRecord) -> ExportRecord {
        ExportRecord {
            dev_eui: meter.dev_eui.clone(),
            serial: meter.serial.clone(),
            region: meter.region_id.clone(),
            usage_type: meter.usage_type.clone(),
            consumption,
        }
    }
}

/// The CSV columns, in order: the JSON fields' names, whose unit suffixes name the units.
pub const COLUMNS: [&str; 25] = [
    "devEui",
    "serial",
    "region",
    "usageType",
    "period",
    "periodStart",
    "periodEnd",
    "periodStartUtc",
    "periodEndUtc",
    "quality",
    "readings",
    "gasLitres",
    "gasCubicMetres",
    "gasRegisterStart",
    "gasRegisterEnd",
    "energyWh",
    "energyKwh",
    "energyRegisterStart",
    "energyRegisterEnd",
    "closedAt",
    "revisions",
    "revisedAt",
    "revisedQuality",
    "revisedGasLitres",
    "revisedEnergyWh",
];

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated, a header line first.
    Csv,
    /// One JSON array.
    Json,
}

/// Writes rows in a format as they come.
pub struct Writer<W: Write> {
    out: W,
    format: Format,
    rows: u64,
}

impl<W: Write> Writer<W> {
    /// A writer; the CSV header is written at once.
    pub fn new(mut out: W, format: Format) -> std::io::Result<Writer<W>> {
        match format {
            Format::Csv => writeln!(out, "{}", COLUMNS.join(","))?,
            Format::Json => write!(out, "[")?,
        }
        Ok(Writer {
            out,
            format,
            rows: 0,
        })
    }

    /// Writes one row.
    pub fn row(&mut self, record: &ExportRecord) -> std::io::Result<()> {
        match self.format {
            Format::Csv => writeln!(self.out, "{}", csv_line(record))?,
            Format::Json => {
                if self.rows > 0 {
                    write!(self.out, ",")?;
                }
                writeln!(self.out)?;
                serde_json::to_writer(&mut self.out, record)?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Ends the output (the JSON array's bracket) and flushes it.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.format == Format::Json {
            writeln!(self.out, "\n]")?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One CSV line (no newline) of a record: each column's JSON value, text unquoted unless it
/// holds a comma or quote, null as empty.
pub fn csv_line(record: &ExportRecord) -> String {
    let value = serde_json::to_value(record).unwrap_or_default();
    COLUMNS
        .iter()
        .map(|c| match &value[*c] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => quoted(s),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn quoted(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::billing::consumption::{MeterSeries, Registers};
    use crate::billing::period::{Period, PeriodKind};

    fn record() -> ExportRecord {
        let tz = chrono_tz::Europe::Madrid;
        let day = NaiveDate::from_ymd_opt(2026, 3, 29).expect("date");
        let period = Period::containing(PeriodKind::Day, tz, day);
        let series = MeterSeries::new(&[
            Registers {
                at: period.start,
                gas_litres: Some(1_000),
                energy_wh: None,
            },
            Registers {
                at: period.end,
                gas_litres: Some(1_234),
                energy_wh: None,
            },
        ]);
        let row = series.row(&period, chrono::TimeDelta::days(7));
        ExportRecord {
            dev_eui: "a1b2c3d4e5000001".into(),
            serial: "12260100000013".into(),
            region: "north, old town".into(),
            usage_type: "residential".into(),
            consumption: ConsumptionRecord::from(&row),
        }
    }

    #[test]
    fn every_field_is_a_column_once() {
        let value = serde_json::to_value(record()).expect("json");
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns = COLUMNS.to_vec();
        keys.sort_unstable();
        columns.sort_unstable();
        assert_eq!(keys, columns);
    }

    #[test]
    fn csv_and_json_hold_the_same_row() {
        let mut csv = Writer::new(Vec::new(), Format::Csv).expect("csv");
        let mut json = Writer::new(Vec::new(), Format::Json).expect("json");
        for _ in 0..2 {
            csv.row(&record()).expect("row");
            json.row(&record()).expect("row");
        }
        let csv = String::from_utf8(csv.finish().expect("end")).expect("utf-8");
        let json: Vec<serde_json::Value> =
            serde_json::from_slice(&json.finish().expect("end")).expect("a JSON array");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()));
        let line = lines.next().expect("a row");
        assert_eq!(
            line,
            "a1b2c3d4e5000001,12260100000013,\"north, old town\",residential,day,\
             2026-03-29T00:00:00+01:00,2026-03-30T00:00:00+02:00,2026-03-28T23:00:00Z,\
             2026-03-29T22:00:00Z,measured,1,234,0.234,1000,1234,,,,,,0,,,,"
        );
        assert_eq!(json.len(), 2);
        assert_eq!(json[0], serde_json::to_value(record()).expect("json"));
    }
}
