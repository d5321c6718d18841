//! `meterhub report consumption`: a billing run's export from the command line, the same rows
//! as the API's, written as meters are read, with a progress line on stderr.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{Months, NaiveDate};
use clap::Args;

use crate::billing::export::{ExportRecord, Format, Writer};
use crate::billing::{self, Calendar, ConsumptionRecord, PeriodKind, Run};
use crate::config::Settings;
use crate::storage::Store;

/// `meterhub report consumption`.
#[derive(Debug, Args)]
pub struct ConsumptionArgs {
    /// Period length: day, week or month.
    #[arg(long, default_value = "month", value_parser = parse_kind)]
    pub period: PeriodKind,
    /// A month, YYYY-MM: its periods (sets --from and --to).
    #[arg(long, value_parser = parse_month, conflicts_with_all = ["from", "to"])]
    pub month: Option<NaiveDate>,
    /// First local date (the period holding it is the first listed).
    #[arg(long)]
    pub from: Option<NaiveDate>,
    /// Periods starting before this local date are listed.
    #[arg(long)]
    pub to: Option<NaiveDate>,
    /// Only this meter (DevEUI or serial).
    #[arg(long, conflicts_with = "region")]
    pub meter: Option<String>,
    /// Only this region's meters.
    #[arg(long)]
    pub region: Option<String>,
    /// csv (a header line, units in the column names) or json (an array).
    #[arg(long, default_value = "csv", value_parser = parse_format)]
    pub format: Format,
    /// Write here instead of to stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

fn parse_kind(s: &str) -> Result<PeriodKind, String> {
    PeriodKind::parse(s).ok_or_else(|| format!("{s:?} is not day, week or month"))
}

fn parse_format(s: &str) -> Result<Format, String> {
    match s {
        "csv" => Ok(Format::Csv),
        "json" => Ok(Format::Json),
        _ => Err(format!("{s:?} is not csv or json")),
    }
}

fn parse_month(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a month (YYYY-MM)"))
}

/// The local dates [from, to) the report covers.
fn range(args: &ConsumptionArgs) -> Result<(NaiveDate, NaiveDate)> {
    let (from, to) = match (args.month, args.from, args.to) {
        (Some(m), _, _) => (m, m + Months::new(1)),
        (None, Some(f), Some(t)) => (f, t),
        _ => bail!("name the periods: --month YYYY-MM, or --from and --to (YYYY-MM-DD)"),
    };
    if from >= to {
        bail!("--from must be before --to");
    }
    Ok((from, to))
}

/// Runs the report; returns the summary line (for stderr).
pub async fn consumption(settings: &Settings, args: &ConsumptionArgs) -> Result<String> {
    let (from, to) = range(args)?;
    let calendar = Calendar::new(&settings.utility, &settings.billing)?;
    let store = Store::connect(
        settings.database.url.expose(),
        settings.database.max_connections,
    )
    .await
    .context("connecting to the database")?;
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut writer = Writer::new(out, args.format)?;
    let mut progress = Progress::new();
    // One meter is the scan of one id.
    let (region, after_id, limit) = if let Some(name) = &args.meter {
        let found = if name.len() == 14 {
            store.meter_by_serial(name).await?
        } else {
            store.meter_by_dev_eui(&name.to_ascii_lowercase()).await?
        };
        let Some(m) = found else {
            bail!("no meter {name}");
        };
        (None, m.id - 1, 1)
    } else {
        if let Some(r) = &args.region
            && !store.region_exists(r).await?
        {
            bail!("no region {r}");
        }
        (args.region.as_deref(), 0, i64::MAX)
    };
    let run = Run {
        kind: args.period,
        from,
        to,
        region,
        after_id,
        limit,
    };
    let mut failed = None;
    let meters = billing::run(&store, &calendar, &run, |meter, rows| {
        let written = rows.iter().try_for_each(|row| {
            writer.row(&ExportRecord::new(&meter, ConsumptionRecord::from(row)))
        });
        let more = match written {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        };
        progress.tick(writer.rows());
        std::future::ready(more)
    })
    .await?;
    if let Some(e) = failed {
        return Err(e).context("writing the report");
    }
    let rows = writer.rows();
    writer.finish().context("writing the report")?;
    store.close().await;
    Ok(format!(
        "{rows} rows for {meters} meters, {} periods from {from} to {to}{}",
        args.period.as_str(),
        args.output
            .as_ref()
            .map_or_else(String::new, |p| format!(", written to {}", p.display()))
    ))
}

/// A progress line on stderr every few seconds of a long run.
struct Progress {
    last: Instant,
    meters: u64,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(2);

    fn new() -> Progress {
        Progress {
            last: Instant::now(),
            meters: 0,
        }
    }

    fn tick(&mut self, rows: u64) {
        self.meters += 1;
        if self.last.elapsed() >= Progress::EVERY {
            eprintln!("{} meters, {rows} rows …", self.meters);
            self.last = Instant::now();
        }
    }
}
