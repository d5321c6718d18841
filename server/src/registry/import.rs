//! `meterhub meters import FILE`: meter records from CSV or JSON, read as a stream, every row
//! validated, the good ones registered idempotently, every error of every bad row reported by
//! line and field.
//!
//! Three stages, each a batch ahead of the next: a reading thread parses and validates rows into
//! batches; a task refuses the rows whose DevEUI or serial appeared on an earlier line (the keys
//! seen so far are kept on disk, [`SeenKeys`]); the caller's task registers each batch in one
//! transaction (`Store::register_meter_batch`). Memory holds a few batches, however long the
//! file.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};

use super::read;
use super::record::{FieldError, validate_with_keys};
use super::rows::{Row, RowError};
use crate::storage::device_keys::OtaaKeys;
use crate::storage::meters::{NewMeter, Registered};
use crate::storage::seen_keys::{Key, SeenKeys};
use crate::storage::{Error as StorageError, Store};

/// Valid meters registered per batch (one transaction).
pub const BATCH: usize = 5_000;

/// What an import did (so far, while it runs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows read from the file.
    pub read: usize,
    /// Meters registered for the first time.
    pub inserted: usize,
    /// Meters whose details changed.
    pub updated: usize,
    /// Meters already registered exactly so.
    pub unchanged: usize,
    /// Rows refused.
    pub refused: usize,
}

impl ImportReport {
    /// Rows registered (new, updated or found unchanged).
    pub fn registered(&self) -> usize {
        self.inserted + self.updated + self.unchanged
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows read: {} new, {} updated, {} unchanged, {} refused",
            self.read, self.inserted, self.updated, self.unchanged, self.refused
        )
    }
}

/// What an import tells its caller while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// An error of a refused row (a row with several errors gives several events, in a row).
    Refused(&'a RowError),
    /// The counts so far and the time since the import began; about once a second.
    Progress(&'a ImportReport, Duration),
}

/// Reads, validates and registers the meters of a CSV, JSON array or NDJSON file.
pub async fn import_file(
    store: &Store,
    path: &Path,
    now: DateTime<Utc>,
    on: impl FnMut(Event<'_>),
) -> Result<ImportReport> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    import_reader(store, file, now, on)
        .await
        .with_context(|| format!("importing {}", path.display()))
}

/// Reads, validates and registers the meters of a file's contents.
pub async fn import_reader(
    store: &Store,
    reader: impl Read + Send + 'static,
    now: DateTime<Utc>,
    mut on: impl FnMut(Event<'_>),
) -> Result<ImportReport> {
    // Two batches in each channel: each stage keeps a batch ahead of the next, no more.
    let (tx, mut read_rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let (checked_tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let today = now.date_naive();
    let reading = tokio::task::spawn_blocking(move || {
        let mut batcher = Batcher::new(today);
        read::rows(reader, |row| match batcher.push(row) {
            Some(batch) => match tx.blocking_send(batch) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            },
            None => ControlFlow::Continue(()),
        })?;
        // Nobody listens when registering failed: that error is the one reported.
        let _ = tx.blocking_send(batcher.take());
        Ok::<_, anyhow::Error>(())
    });
    let checking = tokio::spawn(async move {
        let mut seen = SeenKeys::open().await?;
        while let Some(mut batch) = read_rx.recv().await {
            refuse_repeats(&mut seen, &mut batch).await?;
            if checked_tx.send(batch).await.is_err() {
                break;
            }
        }
        Ok::<_, StorageError>(())
    });
    let mut report = ImportReport::default();
    let started = Instant::now();
    let mut told = started;
    while let Some(batch) = rx.recv().await {
        let Batch {
            rows,
            meters,
            keys,
            lines,
            mut errors,
        } = batch;
        report.read += rows;
        let outcomes = register(store, &meters, now)
            .await
            .with_context(|| format!("registering the rows of lines {:?}", line_span(&lines)))?;
        // Keys go with the meters registered (a refused row's keys are not stored).
        for ((meter, keys), outcome) in meters.iter().zip(&keys).zip(&outcomes) {
            if let (Some(keys), Ok(_)) = (keys, outcome) {
                store
                    .set_device_keys(&meter.dev_eui, keys, now)
                    .await
                    .with_context(|| format!("storing the keys of {}", meter.dev_eui))?;
            }
        }
        for (line, outcome) in lines.into_iter().zip(outcomes) {
            match outcome {
                Ok(Registered::Inserted) => report.inserted += 1,
                Ok(Registered::Updated) => report.updated += 1,
                Ok(Registered::Unchanged) => report.unchanged += 1,
                Err(message) => errors.push(RowError {
                    line,
                    field: Some("serial".to_owned()),
                    message,
                }),
            }
        }
        // Stable: a row's errors stay in the order its checks found them.
        errors.sort_by_key(|e| e.line);
        report.refused += count_lines(&errors);
        for e in &errors {
            on(Event::Refused(e));
        }
        if told.elapsed() >= Duration::from_secs(1) {
            told = Instant::now();
            on(Event::Progress(&report, started.elapsed()));
        }
    }
    checking
        .await
        .context("the check for repeated keys failed")?
        .context("keeping the keys seen so far")?;
    reading.await.context("the reading thread failed")??;
    Ok(report)
}

/// The first and last line of a batch, to name it in an error.
fn line_span(lines: &[usize]) -> (usize, usize) {
    (
        lines.first().copied().unwrap_or(0),
        lines.last().copied().unwrap_or(0),
    )
}

/// Distinct lines among errors sorted by line.
fn count_lines(errors: &[RowError]) -> usize {
    let mut lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    lines.dedup();
    lines.len()
}

/// Registers a batch: one outcome per meter, a conflict being that meter's error. The batch
/// goes in one transaction; should that fail (another writer registered one of its serials
/// between the lookup and the write, say), it goes again meter by meter, so that a conflict
/// is its meter's alone and any other failure is the import's.
async fn register(
    store: &Store,
    meters: &[NewMeter],
    now: DateTime<Utc>,
) -> Result<Vec<Result<Registered, String>>, StorageError> {
    match store.register_meter_batch(meters, now).await {
        Ok(outcomes) => return Ok(outcomes),
        Err(e) => tracing::warn!("a batch failed ({e}); registering its meters one by one"),
    }
    let mut out = Vec::with_capacity(meters.len());
    for m in meters {
        out.push(match store.register_meter(m, now).await {
            Ok(r) => Ok(r),
            Err(StorageError::Conflict(message)) => Err(message),
            Err(e) => return Err(e),
        });
    }
    Ok(out)
}

/// Rows read, validated and ready to register.
#[derive(Debug, Default)]
struct Batch {
    /// Rows read into this batch, good and bad.
    rows: usize,
    /// The valid meters.
    meters: Vec<NewMeter>,
    /// The OTAA keys of each valid meter, when its row gave them.
    keys: Vec<Option<OtaaKeys>>,
    /// The line of each valid meter.
    lines: Vec<usize>,
    /// Every error of the refused rows.
    errors: Vec<RowError>,
}

/// Validates rows and gathers them into batches.
struct Batcher {
    today: NaiveDate,
    batch: Batch,
}

impl Batcher {
    fn new(today: NaiveDate) -> Batcher {
        Batcher {
            today,
            batch: Batch::default(),
        }
    }

    /// Takes a row; returns a batch when one is full.
    fn push(&mut self, row: Row) -> Option<Batch> {
        let Row {
            line,
            record,
            mut errors,
        } = row;
        self.batch.rows += 1;
        let meter =
            record.and_then(|record| match validate_with_keys(&record, self.today) {
                Ok(m) => Some(m),
                Err(fields) => {
                    errors.extend(fields.into_iter().map(|FieldError { field, message }| {
                        RowError {
                            line,
                            field: Some(field.to_owned()),
                            message,
                        }
                    }));
                    None
                }
            });
        match meter {
            Some((meter, keys)) if errors.is_empty() => {
                self.batch.meters.push(meter);
                self.batch.keys.push(keys);
                self.batch.lines.push(line);
            }
            _ => self.batch.errors.extend(errors),
        }
        (self.batch.meters.len() >= BATCH || self.batch.errors.len() >= BATCH).then(|| self.take())
    }

    /// The batch gathered so far.
    fn take(&mut self) -> Batch {
        std::mem::take(&mut self.batch)
    }
}

/// The kinds of key a file may not repeat, numbered for [`SeenKeys`].
const KEYS: [(u8, &str); 2] = [(0, "devEui"), (1, "serial")];

/// A valid meter's DevEUI and serial as keys. Validation made them 16 hexadecimal and 14
/// decimal digits, so both fit in 64 bits.
fn keys(meter: &NewMeter) -> [(Key, &str); 2] {
    let dev_eui = u64::from_str_radix(&meter.dev_eui, 16).unwrap_or(u64::MAX);
    let serial = meter.serial.parse::<u64>().unwrap_or(u64::MAX);
    [
        ((KEYS[0].0, dev_eui), meter.dev_eui.as_str()),
        ((KEYS[1].0, serial), meter.serial.as_str()),
    ]
}

/// Refuses the meters of `batch` whose DevEUI or serial appeared on an earlier line of the
/// file: on a line of an earlier batch (`seen`, which records this batch's keys too) or of
/// this one.
async fn refuse_repeats(seen: &mut SeenKeys, batch: &mut Batch) -> Result<(), StorageError> {
    let all: Vec<(Key, usize)> = batch
        .meters
        .iter()
        .zip(&batch.lines)
        .flat_map(|(m, &line)| keys(m).map(|(key, _)| (key, line)))
        .collect();
    let earlier = seen.record(&all).await?;
    let mut here: HashMap<Key, usize> = HashMap::with_capacity(all.len());
    let meters = std::mem::take(&mut batch.meters);
    let otaa = std::mem::take(&mut batch.keys);
    let lines = std::mem::take(&mut batch.lines);
    for ((meter, meter_keys), line) in meters.into_iter().zip(otaa).zip(lines) {
        let mut repeated = false;
        for (key, text) in keys(&meter) {
            let field = KEYS
                .iter()
                .find(|(k, _)| *k == key.0)
                .map_or("", |(_, f)| *f);
            match earlier.get(&key).or_else(|| here.get(&key)) {
                Some(first) => {
                    repeated = true;
                    batch.errors.push(RowError {
                        line,
                        field: Some(field.to_owned()),
                        message: format!("{text} already appears on line {first}"),
                    });
                }
                None => {
                    here.insert(key, line);
                }
            }
        }
        if !repeated {
            batch.meters.push(meter);
            batch.keys.push(meter_keys);
            batch.lines.push(line);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MeterRecord;

    fn row(line: usize, dev_eui: &str, serial: &str) -> Row {
        Row {
            line,
            record: Some(MeterRecord {
                serial: Some(serial.into()),
                dev_eui: Some(dev_eui.into()),
                application_id: Some("0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f".into()),
                body_number: Some(serde_json::json!(1)),
                user_id: Some("u".into()),
                region: Some("north".into()),
                usage_type: Some("residential".into()),
                mode: Some("credit".into()),
                production_date: Some("2026-01-15".into()),
                reporting_interval_minutes: None,
                join_eui: None,
                app_key: None,
            }),
            errors: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_dev_eui_or_serial_given_twice_is_refused_on_its_later_line_across_batches() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).expect("date");
        let mut batcher = Batcher::new(today);
        let mut seen = SeenKeys::open().await.expect("seen keys");
        assert!(
            batcher
                .push(row(2, "70b3d5e75e000001", "12261000012348"))
                .is_none()
        );
        let mut first = batcher.take();
        refuse_repeats(&mut seen, &mut first).await.expect("first");
        assert_eq!(first.lines, [2]);
        for (line, dev_eui, serial) in [
            (3, "70B3D5E75E000001", "12261000012348"),
            (4, "70b3d5e75e000002", "12261000012348"),
            (5, "70b3d5e75e000003", "12261000012355"),
            (6, "70b3d5e75e000004", "12261000012355"),
        ] {
            assert!(batcher.push(row(line, dev_eui, serial)).is_none());
        }
        let mut second = batcher.take();
        refuse_repeats(&mut seen, &mut second)
            .await
            .expect("second");
        assert_eq!((second.rows, second.lines.clone()), (4, vec![5]));
        let errors: Vec<String> = second.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "line 3: devEui: 70b3d5e75e000001 already appears on line 2",
                "line 3: serial: 12261000012348 already appears on line 2",
                "line 4: serial: 12261000012348 already appears on line 2",
                "line 6: serial: 12261000012355 already appears on line 5",
            ]
        );
    }

    #[test]
    fn a_batch_is_handed_on_when_full() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).expect("date");
        let mut batcher = Batcher::new(today);
        let full = (0..BATCH + 1)
            .filter_map(|i| {
                let serial = firmware_protocol::Serial::new(12, 26, 1, i as u32)
                    .expect("serial")
                    .to_string();
                batcher.push(row(i + 2, &format!("{:016x}", i), &serial))
            })
            .collect::<Vec<_>>();
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].meters.len(), BATCH);
        assert_eq!(batcher.take().meters.len(), 1);
    }

    #[test]
    fn refused_rows_are_counted_once_whatever_their_errors() {
        let e = |line| RowError {
            line,
            field: None,
            message: String::new(),
        };
        assert_eq!(count_lines(&[e(2), e(2), e(5)]), 2);
    }
}
