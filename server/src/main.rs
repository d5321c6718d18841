//! `meterhub`: the server's command line.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use meterhub::app::Application;
use meterhub::cli::{Cli, Command, KeysCommand, MetersCommand, ReportCommand};
use meterhub::config::Settings;
use meterhub::{admin, config, frame, report};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok((output, success)) => {
            if !output.is_empty() {
                println!("{}", output.trim_end());
            }
            if success {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a subcommand; returns what to print and whether everything succeeded.
fn run(cli: &Cli) -> Result<(String, bool)> {
    let settings = || {
        Settings::load(
            cli.settings.config.as_deref(),
            std::env::vars(),
            cli.settings.overrides(),
        )
    };
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
    };
    Ok(match &cli.command {
        Command::Serve => {
            let settings = settings()?;
            init_tracing();
            runtime()?.block_on(serve(settings))?;
            (String::new(), true)
        }
        #[cfg(feature = "demo")]
        Command::Demo {
            meters,
            days,
            speed,
            database,
            exit,
        } => {
            let options = meterhub::demo::DemoOptions {
                meters: *meters,
                days: *days,
                speed: *speed,
                database: database.clone(),
                // `--http-bind`, `METERHUB_HTTP__BIND` or the settings file, as for `serve`.
                http_bind: settings()?.http.bind,
                exit_when_done: *exit,
            };
            let stop = CancellationToken::new();
            let signalled = stop.clone();
            let summary = runtime()?.block_on(async move {
                tokio::spawn(async move {
                    wait_for_signal().await;
                    signalled.cancel();
                });
                meterhub::demo::run(options, stop, |line| eprintln!("{line}")).await
            })?;
            let verdict = match summary.ending {
                meterhub::demo::Ending::AllStored => "all stored",
                meterhub::demo::Ending::Disagree => {
                    "the server acknowledged everything and stored a different number"
                }
                meterhub::demo::Ending::StillCommitting => {
                    "stopped while the server was still committing: the count is not final"
                }
            };
            (
                format!(
                    "{} uplinks published; {} readings of registered meters; {} stored in {} \
                     ({verdict})",
                    summary.published,
                    summary.expected,
                    summary.stored,
                    database.display()
                ),
                summary.ending == meterhub::demo::Ending::AllStored,
            )
        }
        Command::Configfile => (config::commented_defaults(), true),
        Command::Decode(args) => (frame::decode(args)?, true),
        Command::Encode(args) => (frame::encode(args)?, true),
        Command::Migrate => {
            let settings = settings()?;
            (runtime()?.block_on(admin::migrate(&settings))?, true)
        }
        Command::Retention { dry_run } => {
            let settings = settings()?;
            (
                runtime()?.block_on(admin::retention(&settings, *dry_run))?,
                true,
            )
        }
        Command::Clock => (admin::clock_report(&settings()?.clock()?), true),
        #[cfg(feature = "embedded-broker")]
        Command::Broker { port, v311_port } => {
            let broker = meterhub_broker::EmbeddedBroker::start_on(*port, *v311_port)?;
            println!(
                "MQTT v5 on {}, MQTT 3.1.1 on {}; Ctrl-C stops",
                broker.v5_url(),
                broker.v4_url()
            );
            runtime()?.block_on(tokio::signal::ctrl_c())?;
            ("stopped".to_owned(), true)
        }
        Command::Meters(MetersCommand::Import { file }) => {
            let settings = settings()?;
            let started = std::time::Instant::now();
            let report = runtime()?.block_on(admin::import_meters(&settings, file, |event| {
                use meterhub::registry::import::Event;
                match event {
                    Event::Refused(e) => println!("{e}"),
                    Event::Progress(r, elapsed) => eprintln!(
                        "{} rows read, {} registered, {} refused; {:.0} rows/s",
                        r.read,
                        r.registered(),
                        r.refused,
                        rate(r.read, elapsed)
                    ),
                }
            }))?;
            let elapsed = started.elapsed();
            if report.inserted + report.updated > 0 {
                sync_after_change(&settings);
            }
            (
                format!(
                    "{report} in {:.1} s ({:.0} rows/s)",
                    elapsed.as_secs_f64(),
                    rate(report.read, elapsed)
                ),
                report.refused == 0,
            )
        }
        Command::Meters(MetersCommand::Update(args)) => {
            let settings = settings()?;
            (
                runtime()?.block_on(admin::update_meter(&settings, args))?,
                true,
            )
        }
        Command::Meters(MetersCommand::Retire {
            meter,
            outcome,
            reason,
        }) => {
            let settings = settings()?;
            let report =
                runtime()?.block_on(admin::retire_meter(&settings, meter, outcome, reason))?;
            sync_after_change(&settings);
            (report, true)
        }
        Command::Meters(MetersCommand::DeleteReadings { range, force }) => {
            let settings = settings()?;
            (
                runtime()?.block_on(admin::delete_data(
                    &settings,
                    range,
                    meterhub::storage::deletion::Data::Readings,
                    *force,
                ))?,
                true,
            )
        }
        Command::Meters(MetersCommand::DeleteAlarms { range }) => {
            let settings = settings()?;
            (
                runtime()?.block_on(admin::delete_data(
                    &settings,
                    range,
                    meterhub::storage::deletion::Data::Alarms,
                    false,
                ))?,
                true,
            )
        }
        Command::Meters(MetersCommand::EraseCustomer {
            user_id,
            reason,
            dry_run,
        }) => {
            let settings = settings()?;
            (
                runtime()?.block_on(admin::erase_customer(&settings, user_id, reason, *dry_run))?,
                true,
            )
        }
        Command::Meters(MetersCommand::Sync { dry_run }) => {
            let settings = settings()?;
            runtime()?.block_on(admin::sync_meters(&settings, *dry_run))?
        }
        Command::Meters(MetersCommand::Replace(args)) => {
            let settings = settings()?;
            (
                runtime()?.block_on(admin::replace_meter(&settings, args))?,
                true,
            )
        }
        Command::Report(ReportCommand::Consumption(args)) => {
            let settings = settings()?;
            // The rows may go to stdout: the summary goes to stderr.
            let summary = runtime()?.block_on(report::consumption(&settings, args))?;
            eprintln!("{summary}");
            (String::new(), true)
        }
        Command::Keys(command) => {
            let settings = settings()?;
            let output = runtime()?.block_on(async {
                match command {
                    KeysCommand::Create { name, role } => {
                        admin::create_key(&settings, name, role).await
                    }
                    KeysCommand::List => admin::list_keys(&settings).await,
                    KeysCommand::Revoke { id } => admin::revoke_key(&settings, id).await,
                }
            })?;
            (output, true)
        }
    })
}

/// Rows a second.
fn rate(rows: usize, elapsed: std::time::Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64().max(1e-3)
}

/// Logs to stderr; `RUST_LOG` filters (default: info).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log file or journal would otherwise hold escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(settings: Settings) -> Result<()> {
    let shutdown = CancellationToken::new();
    if let (Some(anchor), speed) = (&settings.clock.anchor, settings.clock.speed) {
        // A simulator must be given the same three values to agree with this server.
        let start = settings.clock.start.as_deref().unwrap_or(anchor);
        tracing::info!(speed, start, anchor, "simulated clock");
    }
    let app = Application::build(settings, shutdown.clone()).await?;
    // Printed for scripts and tests that start the server on port 0.
    eprintln!("listening on http://{}", app.http_addr());
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing the batch in flight");
        shutdown.cancel();
    });
    app.run_until_stopped().await
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// After a registry change made by this process: a round of the ChirpStack sync when it is
/// configured, its outcome on stderr. The change itself is done: a failure here is reported,
/// and the server's next periodic round makes up for it.
fn sync_after_change(settings: &Settings) {
    let line = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(admin::sync_after_change(settings)));
    match line {
        Ok(Some(line)) => eprintln!("{line}"),
        Ok(None) => {}
        Err(e) => eprintln!("ChirpStack sync not run: {e:#}"),
    }
}
