//! `meterhub`: the server's command line.

use std::process::ExitCode;

use clap::Parser;
use meterhub::cli::{Cli, Command};
use meterhub::{config, frame};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Configfile => Ok(config::commented_defaults()),
        Command::Decode(args) => frame::decode(args),
        Command::Encode(args) => frame::encode(args),
    };
    match result {
        Ok(output) => {
            println!("{}", output.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
