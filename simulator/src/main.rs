//! `meterhub-sim`: a fleet of simulated meter firmwares.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use firmware_protocol::Serial;

/// A fleet of simulated LoRaWAN gas and electricity meters for meterhub.
#[derive(Debug, Parser)]
#[command(name = "meterhub-sim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print valid meter serial numbers (consecutive sequence numbers, check digit computed).
    Serials {
        /// How many serials.
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Manufacturer code, 0–99.
        #[arg(long, default_value_t = 12)]
        manufacturer: u8,
        /// Production year, last two digits.
        #[arg(long, default_value_t = 26)]
        year: u8,
        /// Medium digit: 1 gas, 2 electricity, 3 both.
        #[arg(long, default_value_t = 1)]
        medium: u8,
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        first: u32,
    },
}

fn serials(count: u32, manufacturer: u8, year: u8, medium: u8, first: u32) -> Result<String> {
    let mut out = String::new();
    for i in 0..count {
        let Some(sequence) = first.checked_add(i) else {
            bail!("sequence numbers overflow");
        };
        let Some(serial) = Serial::new(manufacturer, year, medium, sequence) else {
            bail!(
                "a serial needs manufacturer and year ≤ 99, medium ≤ 9 and sequence ≤ 99999999 \
                 (got {manufacturer}, {year}, {medium}, {sequence})"
            );
        };
        out.push_str(&serial.to_string());
        out.push('\n');
    }
    Ok(out)
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serials {
            count,
            manufacturer,
            year,
            medium,
            first,
        } => serials(count, manufacturer, year, medium, first),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_serials_are_valid_and_consecutive() {
        let out = serials(3, 12, 26, 1, 1233).expect("valid parts");
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(
            lines,
            ["12261000012330", "12261000012348", "12261000012355"]
        );
        for l in lines {
            assert!(Serial::parse(l).is_ok());
        }
    }

    #[test]
    fn out_of_range_parts_are_refused() {
        assert!(serials(1, 100, 26, 1, 1).is_err());
        assert!(serials(2, 12, 26, 1, 99_999_999).is_err());
    }
}
