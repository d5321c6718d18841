//! What an operator can ask a meter to do, and how each request travels.

use firmware_protocol::{ClockSync, ClockSyncDown, Command, Downlink, Tests};
use serde::{Deserialize, Serialize};

/// A command for one meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum CommandKind {
    /// Open the valve (confirmed).
    ValveOpen,
    /// Close the valve (confirmed).
    ValveClose,
    /// Run self-tests; the result uplink completes it.
    SelfTest {
        /// The wire's test bits (PROTOCOL.md); at least one.
        tests: u8,
    },
    /// Send a reading now; the reading completes it.
    ReadNow,
    /// Send the device info; the info uplink completes it.
    SendInfo,
    /// Report every `minutes` (confirmed); the info uplink that follows completes it.
    SetReportingInterval {
        /// 15–10080.
        minutes: u16,
    },
    /// Cut the supply and stop reporting (confirmed).
    Disconnect,
    /// TS003 ForceDeviceResyncReq: the AppTimeReq that follows completes it.
    ForceResync {
        /// AppTimeReq transmissions asked for, 1–7.
        transmissions: u8,
    },
    /// TS003 DeviceAppTimePeriodicityReq: AppTimeReq every 128·2^period seconds.
    ClockPeriodicity {
        /// 0–15.
        period: u8,
    },
    /// TS003 PackageVersionReq.
    PackageVersion,
}

/// Why a command cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidCommand {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// A command as it goes on the air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// LoRaWAN fPort.
    pub fport: u8,
    /// The application payload.
    pub payload: Vec<u8>,
}

impl CommandKind {
    /// The name stored in the `commands` table.
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::ValveOpen => "valveOpen",
            CommandKind::ValveClose => "valveClose",
            CommandKind::SelfTest { .. } => "selfTest",
            CommandKind::ReadNow => "readNow",
            CommandKind::SendInfo => "sendInfo",
            CommandKind::SetReportingInterval { .. } => "setReportingInterval",
            CommandKind::Disconnect => "disconnect",
            CommandKind::ForceResync { .. } => "forceResync",
            CommandKind::ClockPeriodicity { .. } => "clockPeriodicity",
            CommandKind::PackageVersion => "packageVersion",
        }
    }

    /// Confirmed where the command changes the meter: its `ack` says it arrived.
    pub fn confirmed(&self) -> bool {
        matches!(
            self,
            CommandKind::ValveOpen
                | CommandKind::ValveClose
                | CommandKind::SetReportingInterval { .. }
                | CommandKind::Disconnect
        )
    }

    /// Whether an uplink answers it (and so completes it, or it fails at its deadline).
    pub fn awaits_answer(&self) -> bool {
        awaits_answer(self.name())
    }

    /// The frame, checked against the protocol's ranges.
    pub fn frame(&self) -> Result<Frame, InvalidCommand> {
        let invalid = |field, reason: &str| InvalidCommand {
            field,
            reason: reason.to_owned(),
        };
        let message = match *self {
            CommandKind::ValveOpen => Downlink::Command(Command::ValveOpen),
            CommandKind::ValveClose => Downlink::Command(Command::ValveClose),
            CommandKind::SelfTest { tests } => {
                let Some(tests) = Tests::from_bits(tests).filter(|t| !t.is_empty()) else {
                    return Err(invalid(
                        "tests",
                        "at least one test, and only the bits PROTOCOL.md defines",
                    ));
                };
                Downlink::Command(Command::RunSelfTest { tests })
            }
            CommandKind::ReadNow => Downlink::Command(Command::ReadNow),
            CommandKind::SendInfo => Downlink::Command(Command::SendInfo),
            CommandKind::SetReportingInterval { minutes } => {
                if !(15..=10_080).contains(&minutes) {
                    return Err(invalid("minutes", "must be between 15 and 10080"));
                }
                Downlink::Command(Command::SetReportingInterval { minutes })
            }
            CommandKind::Disconnect => Downlink::Command(Command::Disconnect),
            CommandKind::ForceResync { transmissions } => {
                if !(1..=7).contains(&transmissions) {
                    return Err(invalid("transmissions", "must be between 1 and 7"));
                }
                clock(ClockSyncDown::ForceDeviceResyncReq {
                    nb_transmissions: transmissions,
                })
            }
            CommandKind::ClockPeriodicity { period } => {
                if period > 15 {
                    return Err(invalid("period", "must be between 0 and 15"));
                }
                clock(ClockSyncDown::DeviceAppTimePeriodicityReq { period })
            }
            CommandKind::PackageVersion => clock(ClockSyncDown::PackageVersionReq),
        };
        let mut payload = [0u8; 64];
        let n = message.encode(&mut payload).map_err(|e| InvalidCommand {
            field: "kind",
            reason: e.to_string(),
        })?;
        Ok(Frame {
            fport: message.fport(),
            payload: payload[..n].to_vec(),
        })
    }
}

fn clock(command: ClockSyncDown) -> Downlink {
    Downlink::ClockSync(ClockSync::single(command))
}

/// Whether commands of this stored kind wait for an answering uplink.
pub fn awaits_answer(kind: &str) -> bool {
    matches!(
        kind,
        "selfTest"
            | "readNow"
            | "sendInfo"
            | "setReportingInterval"
            | "forceResync"
            | "clockPeriodicity"
            | "packageVersion"
    )
}

/// The stored kinds an uplink of this sort completes.
pub fn completed_by(uplink: Answer) -> &'static [&'static str] {
    match uplink {
        Answer::Reading => &["readNow"],
        Answer::Info => &["sendInfo", "setReportingInterval"],
        Answer::SelfTest => &["selfTest"],
        Answer::AppTimeReq => &["forceResync"],
        Answer::Periodicity => &["clockPeriodicity"],
        Answer::PackageVersion => &["packageVersion"],
    }
}

/// An uplink that can answer a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A reading (fPort 1).
    Reading,
    /// Device info (fPort 4).
    Info,
    /// A self-test result (fPort 3).
    SelfTest,
    /// A TS003 AppTimeReq.
    AppTimeReq,
    /// A TS003 DeviceAppTimePeriodicityAns.
    Periodicity,
    /// A TS003 PackageVersionAns.
    PackageVersion,
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_protocol::{ClockSyncDownlink, decode_downlink};

    #[test]
    fn every_kind_encodes_to_a_frame_the_protocol_decodes() {
        let kinds = [
            CommandKind::ValveOpen,
            CommandKind::ValveClose,
            CommandKind::SelfTest { tests: 0b11 },
            CommandKind::ReadNow,
            CommandKind::SendInfo,
            CommandKind::SetReportingInterval { minutes: 60 },
            CommandKind::Disconnect,
            CommandKind::ForceResync { transmissions: 2 },
            CommandKind::ClockPeriodicity { period: 9 },
            CommandKind::PackageVersion,
        ];
        for kind in kinds {
            let frame = kind.frame().expect("valid");
            let decoded = decode_downlink(frame.fport, &frame.payload).expect("decodes");
            match (kind, decoded) {
                (CommandKind::SetReportingInterval { minutes }, Downlink::Command(c)) => {
                    assert_eq!(c, Command::SetReportingInterval { minutes })
                }
                (CommandKind::ForceResync { transmissions }, Downlink::ClockSync(c)) => {
                    let c: ClockSyncDownlink = c;
                    assert_eq!(
                        c.iter().copied().collect::<Vec<_>>(),
                        vec![ClockSyncDown::ForceDeviceResyncReq {
                            nb_transmissions: transmissions
                        }]
                    )
                }
                _ => {}
            }
        }
    }

    #[test]
    fn out_of_range_arguments_name_their_field() {
        assert_eq!(
            CommandKind::SetReportingInterval { minutes: 5 }
                .frame()
                .expect_err("too short")
                .field,
            "minutes"
        );
        assert_eq!(
            CommandKind::SelfTest { tests: 0 }
                .frame()
                .expect_err("none")
                .field,
            "tests"
        );
        assert_eq!(
            CommandKind::ClockPeriodicity { period: 16 }
                .frame()
                .expect_err("too long")
                .field,
            "period"
        );
        assert_eq!(
            CommandKind::ForceResync { transmissions: 0 }
                .frame()
                .expect_err("none")
                .field,
            "transmissions"
        );
    }

    #[test]
    fn only_commands_that_change_the_meter_are_confirmed() {
        assert!(CommandKind::ValveClose.confirmed());
        assert!(CommandKind::Disconnect.confirmed());
        assert!(!CommandKind::ReadNow.confirmed());
        assert!(!CommandKind::ForceResync { transmissions: 1 }.confirmed());
    }
}
