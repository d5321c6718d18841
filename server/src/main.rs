//! `meterhub`: the server's command line.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use meterhub::cli::{Cli, Command, MetersCommand};
use meterhub::config::Settings;
use meterhub::{admin, config, frame};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok((output, success)) => {
            println!("{}", output.trim_end());
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
        Command::Configfile => (config::commented_defaults(), true),
        Command::Decode(args) => (frame::decode(args)?, true),
        Command::Encode(args) => (frame::encode(args)?, true),
        Command::Migrate => {
            let settings = settings()?;
            (runtime()?.block_on(admin::migrate(&settings))?, true)
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
            let report = runtime()?.block_on(admin::import_meters(&settings, file))?;
            let success = report.errors.is_empty();
            (report.to_string(), success)
        }
    })
}
