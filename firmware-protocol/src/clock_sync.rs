//! fPort 202: the LoRaWAN Application Layer Clock Synchronization package v1.0.0 (TS003).
//!
//! Several commands may share one frame, each starting with its CID, whose meaning depends on
//! the direction. RFU bits are sent as zero and ignored on receipt, as the specification asks
//! of receivers, so meters of other makers that implement TS003 interoperate.

use core::fmt;

use crate::wire::{Reader, Writer};
use crate::{Error, MAX_CLOCK_SYNC_COMMANDS};

/// The TS003 package identifier (clock synchronisation).
pub const CLOCK_SYNC_PACKAGE_ID: u8 = 1;
/// The TS003 package version this crate implements.
pub const CLOCK_SYNC_PACKAGE_VERSION: u8 = 1;

/// A clock-synchronisation command sent by a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        tag = "command",
        rename_all = "camelCase",
        rename_all_fields = "camelCase"
    )
)]
pub enum ClockSyncUp {
    /// CID 0x00: the package the device implements.
    PackageVersionAns {
        /// Package identifier (1 = clock synchronisation).
        package_identifier: u8,
        /// Package version (1).
        package_version: u8,
    },
    /// CID 0x01: the device asks for a clock correction.
    AppTimeReq {
        /// The device clock, GPS seconds modulo 2^32.
        device_time: u32,
        /// Request token, 0–15; the answer must echo it.
        token_req: u8,
        /// Whether the device wants an answer even when no correction is needed.
        ans_required: bool,
    },
    /// CID 0x02: the device acknowledges a new periodicity.
    DeviceAppTimePeriodicityAns {
        /// The device does not support the requested periodicity.
        not_supported: bool,
        /// The device clock when it answered, GPS seconds.
        device_time: u32,
    },
}

/// A clock-synchronisation command sent to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        tag = "command",
        rename_all = "camelCase",
        rename_all_fields = "camelCase"
    )
)]
pub enum ClockSyncDown {
    /// CID 0x00: ask which package version the device implements.
    PackageVersionReq,
    /// CID 0x01: the answer to an AppTimeReq.
    AppTimeAns {
        /// Seconds to add to the device clock (signed).
        time_correction: i32,
        /// The token of the request answered, 0–15.
        token_ans: u8,
    },
    /// CID 0x02: set how often the device sends AppTimeReq: every 128·2^period s.
    DeviceAppTimePeriodicityReq {
        /// 0–15.
        period: u8,
    },
    /// CID 0x03: make the device send AppTimeReq `nb_transmissions` times now.
    ForceDeviceResyncReq {
        /// 0–7 (0 = none).
        nb_transmissions: u8,
    },
}

impl ClockSyncCommand for ClockSyncUp {
    fn encoded_len(&self) -> usize {
        1 + match self {
            ClockSyncUp::PackageVersionAns { .. } => 2,
            ClockSyncUp::AppTimeReq { .. } | ClockSyncUp::DeviceAppTimePeriodicityAns { .. } => 5,
        }
    }

    fn check(&self) -> Result<(), Error> {
        match *self {
            ClockSyncUp::AppTimeReq { token_req, .. } if token_req > 15 => {
                Err(Error::OutOfRange { field: "tokenReq" })
            }
            _ => Ok(()),
        }
    }

    fn write(&self, w: &mut Writer<'_>) {
        match *self {
            ClockSyncUp::PackageVersionAns {
                package_identifier,
                package_version,
            } => {
                w.u8(0x00);
                w.u8(package_identifier);
                w.u8(package_version);
            }
            ClockSyncUp::AppTimeReq {
                device_time,
                token_req,
                ans_required,
            } => {
                w.u8(0x01);
                w.u32(device_time);
                w.u8(token_req | if ans_required { 0x10 } else { 0 });
            }
            ClockSyncUp::DeviceAppTimePeriodicityAns {
                not_supported,
                device_time,
            } => {
                w.u8(0x02);
                w.u8(u8::from(not_supported));
                w.u32(device_time);
            }
        }
    }

    fn read(cid: u8, r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(match cid {
            0x00 => ClockSyncUp::PackageVersionAns {
                package_identifier: r.u8()?,
                package_version: r.u8()?,
            },
            0x01 => {
                let device_time = r.u32()?;
                let param = r.u8()?;
                ClockSyncUp::AppTimeReq {
                    device_time,
                    token_req: param & 0x0F,
                    ans_required: param & 0x10 != 0,
                }
            }
            _ => {
                let status = r.u8()?;
                ClockSyncUp::DeviceAppTimePeriodicityAns {
                    not_supported: status & 0x01 != 0,
                    device_time: r.u32()?,
                }
            }
        })
    }

    fn payload_len(cid: u8) -> Option<usize> {
        match cid {
            0x00 => Some(2),
            0x01 | 0x02 => Some(5),
            _ => None,
        }
    }
}

impl ClockSyncCommand for ClockSyncDown {
    fn encoded_len(&self) -> usize {
        1 + match self {
            ClockSyncDown::PackageVersionReq => 0,
            ClockSyncDown::AppTimeAns { .. } => 5,
            ClockSyncDown::DeviceAppTimePeriodicityReq { .. }
            | ClockSyncDown::ForceDeviceResyncReq { .. } => 1,
        }
    }

    fn check(&self) -> Result<(), Error> {
        match *self {
            ClockSyncDown::AppTimeAns { token_ans, .. } if token_ans > 15 => {
                Err(Error::OutOfRange { field: "tokenAns" })
            }
            ClockSyncDown::DeviceAppTimePeriodicityReq { period } if period > 15 => {
                Err(Error::OutOfRange { field: "period" })
            }
            ClockSyncDown::ForceDeviceResyncReq { nb_transmissions } if nb_transmissions > 7 => {
                Err(Error::OutOfRange {
                    field: "nbTransmissions",
                })
            }
            _ => Ok(()),
        }
    }

    fn write(&self, w: &mut Writer<'_>) {
        match *self {
            ClockSyncDown::PackageVersionReq => w.u8(0x00),
            ClockSyncDown::AppTimeAns {
                time_correction,
                token_ans,
            } => {
                w.u8(0x01);
                w.i32(time_correction);
                w.u8(token_ans);
            }
            ClockSyncDown::DeviceAppTimePeriodicityReq { period } => {
                w.u8(0x02);
                w.u8(period);
            }
            ClockSyncDown::ForceDeviceResyncReq { nb_transmissions } => {
                w.u8(0x03);
                w.u8(nb_transmissions);
            }
        }
    }

    fn read(cid: u8, r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(match cid {
            0x00 => ClockSyncDown::PackageVersionReq,
            0x01 => {
                let time_correction = r.i32()?;
                ClockSyncDown::AppTimeAns {
                    time_correction,
                    token_ans: r.u8()? & 0x0F,
                }
            }
            0x02 => ClockSyncDown::DeviceAppTimePeriodicityReq {
                period: r.u8()? & 0x0F,
            },
            _ => ClockSyncDown::ForceDeviceResyncReq {
                nb_transmissions: r.u8()? & 0x07,
            },
        })
    }

    fn payload_len(cid: u8) -> Option<usize> {
        match cid {
            0x00 => Some(0),
            0x01 => Some(5),
            0x02 | 0x03 => Some(1),
            _ => None,
        }
    }
}

/// The commands of one fPort 202 frame, in order: at most [`MAX_CLOCK_SYNC_COMMANDS`], held
/// without allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClockSync<T: Copy> {
    items: [Option<T>; MAX_CLOCK_SYNC_COMMANDS],
    len: usize,
}

/// The commands of an uplink fPort 202 frame.
pub type ClockSyncUplink = ClockSync<ClockSyncUp>;
/// The commands of a downlink fPort 202 frame.
pub type ClockSyncDownlink = ClockSync<ClockSyncDown>;

impl<T: Copy> ClockSync<T> {
    /// No commands yet.
    pub const fn new() -> Self {
        ClockSync {
            items: [None; MAX_CLOCK_SYNC_COMMANDS],
            len: 0,
        }
    }

    /// A frame holding one command.
    pub fn single(command: T) -> Self {
        let mut list = Self::new();
        list.items[0] = Some(command);
        list.len = 1;
        list
    }

    /// Appends a command; fails when the frame already holds the maximum.
    pub fn push(&mut self, command: T) -> Result<(), Error> {
        let slot = self.items.get_mut(self.len).ok_or(Error::TooManyCommands)?;
        *slot = Some(command);
        self.len += 1;
        Ok(())
    }

    /// The commands in frame order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().take(self.len).flatten()
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no command.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Copy> Default for ClockSync<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + fmt::Debug> fmt::Debug for ClockSync<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What the two directions have in common, so one generic codec serves both.
trait ClockSyncCommand: Copy + Sized {
    /// Size including the CID.
    fn encoded_len(&self) -> usize;
    /// Range checks before encoding.
    fn check(&self) -> Result<(), Error>;
    fn write(&self, w: &mut Writer<'_>);
    /// Reads the payload after `cid`, which `payload_len` accepted.
    fn read(cid: u8, r: &mut Reader<'_>) -> Result<Self, Error>;
    /// Payload size after the CID, or `None` for a CID this direction does not use.
    fn payload_len(cid: u8) -> Option<usize>;
}

#[allow(private_bounds)]
impl<T: ClockSyncCommand> ClockSync<T> {
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.iter().map(T::encoded_len).sum()
    }

    /// Encodes into `out`, returning the number of bytes written. An empty list is an error:
    /// an empty fPort 202 frame means nothing.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        if self.is_empty() {
            return Err(Error::Empty);
        }
        for c in self.iter() {
            c.check()?;
        }
        let mut w = Writer::new(out, self.encoded_len())?;
        for c in self.iter() {
            c.write(&mut w);
        }
        Ok(w.finish())
    }

    /// Decodes a whole fPort 202 frame of this direction.
    pub fn decode(frame: &[u8]) -> Result<Self, Error> {
        if frame.is_empty() {
            return Err(Error::Empty);
        }
        let mut list = Self::new();
        let mut r = Reader::new(frame);
        while r.remaining() > 0 {
            if list.len == MAX_CLOCK_SYNC_COMMANDS {
                return Err(Error::TooManyCommands);
            }
            let start = r.position();
            let cid = r.u8()?;
            let size = T::payload_len(cid).ok_or(Error::UnknownCode {
                field: "cid",
                code: cid,
            })?;
            if r.remaining() < size {
                return Err(Error::TooShort {
                    expected: start + 1 + size,
                    found: frame.len(),
                });
            }
            list.push(T::read(cid, &mut r)?)?;
        }
        Ok(list)
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{ClockSync, MAX_CLOCK_SYNC_COMMANDS};

    impl<T: Copy + serde::Serialize> serde::Serialize for ClockSync<T> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            let mut s = serializer.serialize_struct("ClockSync", 1)?;
            s.serialize_field("commands", &Commands(self))?;
            s.end()
        }
    }

    struct Commands<'a, T: Copy>(&'a ClockSync<T>);

    impl<T: Copy + serde::Serialize> serde::Serialize for Commands<'_, T> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.iter())
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(bound = "T: serde::Deserialize<'de>")]
    struct Wire<T> {
        commands: alloc::vec::Vec<T>,
    }

    impl<'de, T: Copy + serde::Deserialize<'de>> serde::Deserialize<'de> for ClockSync<T> {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let wire = Wire::<T>::deserialize(deserializer)?;
            let mut list = ClockSync::new();
            for c in wire.commands {
                list.push(c).map_err(|_| {
                    serde::de::Error::custom(format_args!(
                        "more than {MAX_CLOCK_SYNC_COMMANDS} clock sync commands in one frame"
                    ))
                })?;
            }
            Ok(list)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_time_req_example_from_the_specification() {
        let up = ClockSyncUplink::single(ClockSyncUp::AppTimeReq {
            device_time: 1024,
            token_req: 15,
            ans_required: true,
        });
        let mut buf = [0u8; 8];
        let n = up.encode(&mut buf).expect("fits");
        assert_eq!(&buf[..n], &[0x01, 0x00, 0x04, 0x00, 0x00, 0x1F]);
        assert_eq!(ClockSyncUplink::decode(&buf[..n]), Ok(up));
    }

    #[test]
    fn several_commands_share_a_frame() {
        let frame = [
            0x00, 0x03, 0x02, 0x02, 0x01, 0x01, 0xFE, 0xFF, 0xFF, 0xFF, 0x07,
        ];
        let down = ClockSyncDownlink::decode(&frame).expect("valid");
        let got: std::vec::Vec<_> = down.iter().copied().collect();
        assert_eq!(
            got,
            [
                ClockSyncDown::PackageVersionReq,
                ClockSyncDown::ForceDeviceResyncReq {
                    nb_transmissions: 2
                },
                ClockSyncDown::DeviceAppTimePeriodicityReq { period: 1 },
                ClockSyncDown::AppTimeAns {
                    time_correction: -2,
                    token_ans: 7
                },
            ]
        );
    }

    #[test]
    fn rfu_bits_are_ignored_on_receipt() {
        let frame = [0x01, 0x00, 0x04, 0x00, 0x00, 0xFF];
        let up = ClockSyncUplink::decode(&frame).expect("valid");
        assert_eq!(
            up.iter().next(),
            Some(&ClockSyncUp::AppTimeReq {
                device_time: 1024,
                token_req: 15,
                ans_required: true
            })
        );
    }

    #[test]
    fn a_ninth_command_is_refused() {
        let frame = [0x00u8; 9];
        assert_eq!(
            ClockSyncDownlink::decode(&frame[..8]).map(|l| l.len()),
            Ok(8)
        );
        assert_eq!(
            ClockSyncDownlink::decode(&frame),
            Err(Error::TooManyCommands)
        );
    }

    #[test]
    fn truncated_command_names_the_length_it_needs() {
        assert_eq!(
            ClockSyncUplink::decode(&[0x00, 0x01, 0x01, 0x01, 0x00]),
            Err(Error::TooShort {
                expected: 9,
                found: 5
            })
        );
        assert_eq!(
            ClockSyncUplink::decode(&[0x03]),
            Err(Error::UnknownCode {
                field: "cid",
                code: 3
            })
        );
    }
}
