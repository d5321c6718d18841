//! What differs between the registry and ChirpStack's device list, computed without I/O from
//! both sides' states: the sync applies it, `meterhub meters sync --dry-run` prints it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use meterhub_chirpstack::Device;

use crate::storage::device_keys::{OtaaKeys, SyncedMeter};

/// One difference between the registry and ChirpStack's devices of the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// A meter in service of the application, with keys, that ChirpStack lacks: created.
    Missing {
        /// DevEUI.
        dev_eui: String,
        /// Serial, the device's name.
        serial: String,
        /// Its root keys.
        keys: OtaaKeys,
    },
    /// A meter in service of the application that ChirpStack lacks, with no keys in the
    /// registry to create it with: reported until its keys are given (install it again with
    /// `joinEui` and `appKey`).
    MissingWithoutKeys {
        /// DevEUI.
        dev_eui: String,
        /// Serial.
        serial: String,
    },
    /// A device of a registered meter that is not in service of the application (retired to
    /// stock or destroyed, or registered to another application): deleted.
    Extra {
        /// DevEUI.
        dev_eui: String,
        /// Why it should not be there.
        why: String,
    },
    /// A device unknown to the registry: left alone (ChirpStack may serve other devices than
    /// meterhub's), reported.
    Unknown {
        /// DevEUI.
        dev_eui: String,
        /// Its name in ChirpStack.
        name: String,
    },
    /// A device whose AppKey in ChirpStack is not the registry's (or that has none): its keys
    /// are set to the registry's. Seen only when keys are compared.
    KeyMismatch {
        /// DevEUI.
        dev_eui: String,
        /// Serial.
        serial: String,
        /// The registry's keys.
        keys: OtaaKeys,
    },
}

impl Difference {
    /// Whether the sync changes ChirpStack for it (the others are only reported).
    pub fn is_applied(&self) -> bool {
        matches!(
            self,
            Difference::Missing { .. } | Difference::Extra { .. } | Difference::KeyMismatch { .. }
        )
    }

    /// The device's DevEUI.
    pub fn dev_eui(&self) -> &str {
        match self {
            Difference::Missing { dev_eui, .. }
            | Difference::MissingWithoutKeys { dev_eui, .. }
            | Difference::Extra { dev_eui, .. }
            | Difference::Unknown { dev_eui, .. }
            | Difference::KeyMismatch { dev_eui, .. } => dev_eui,
        }
    }
}

impl fmt::Display for Difference {
    /// One line, never holding a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Missing {
                dev_eui, serial, ..
            } => write!(f, "missing in ChirpStack: {dev_eui} (serial {serial})"),
            Difference::MissingWithoutKeys { dev_eui, serial } => write!(
                f,
                "missing in ChirpStack, no keys to create it: {dev_eui} (serial {serial}); \
                 install it again with joinEui and appKey"
            ),
            Difference::Extra { dev_eui, why } => {
                write!(f, "extra in ChirpStack: {dev_eui} ({why})")
            }
            Difference::Unknown { dev_eui, name } => write!(
                f,
                "in ChirpStack, unknown to meterhub (left alone): {dev_eui} (name {name:?})"
            ),
            Difference::KeyMismatch {
                dev_eui, serial, ..
            } => write!(
                f,
                "key mismatch: {dev_eui} (serial {serial}): ChirpStack's AppKey is not the \
                 registry's"
            ),
        }
    }
}

/// The differences between the registry's `meters` and ChirpStack's `devices` of
/// `application_id`, in DevEUI order. A meter belongs in ChirpStack when it is in service and
/// registered to `application_id`; a device is extra when its meter is registered but does not
/// belong there.
pub fn diff(application_id: &str, meters: &[SyncedMeter], devices: &[Device]) -> Vec<Difference> {
    let registry: HashMap<&str, &SyncedMeter> =
        meters.iter().map(|m| (m.dev_eui.as_str(), m)).collect();
    let present: HashMap<&str, &Device> = devices.iter().map(|d| (d.dev_eui.as_str(), d)).collect();
    let belongs = |m: &SyncedMeter| m.in_service && m.application_id == application_id;
    // Keyed by DevEUI: one difference per device, in a stable order.
    let mut out: BTreeMap<&str, Difference> = BTreeMap::new();
    for m in meters.iter().filter(|m| belongs(m)) {
        if present.contains_key(m.dev_eui.as_str()) {
            continue;
        }
        let difference = match &m.keys {
            Some(keys) => Difference::Missing {
                dev_eui: m.dev_eui.clone(),
                serial: m.serial.clone(),
                keys: keys.clone(),
            },
            None => Difference::MissingWithoutKeys {
                dev_eui: m.dev_eui.clone(),
                serial: m.serial.clone(),
            },
        };
        out.insert(&m.dev_eui, difference);
    }
    for d in devices {
        let difference = match registry.get(d.dev_eui.as_str()) {
            Some(m) if belongs(m) => continue,
            Some(m) if !m.in_service => Difference::Extra {
                dev_eui: d.dev_eui.clone(),
                why: "its meter is out of service".to_owned(),
            },
            Some(m) => Difference::Extra {
                dev_eui: d.dev_eui.clone(),
                why: format!(
                    "its meter is registered to application {}",
                    m.application_id
                ),
            },
            None => Difference::Unknown {
                dev_eui: d.dev_eui.clone(),
                name: d.name.clone(),
            },
        };
        out.insert(&d.dev_eui, difference);
    }
    out.into_values().collect()
}

/// The devices present on both sides whose keys differ: `app_keys` holds ChirpStack's AppKey
/// of each device looked at (`None`: it has no keys). A meter without keys in the registry, or
/// a device not looked at, is not compared.
pub fn key_mismatches(
    application_id: &str,
    meters: &[SyncedMeter],
    app_keys: &HashMap<String, Option<String>>,
) -> Vec<Difference> {
    meters
        .iter()
        .filter(|m| m.in_service && m.application_id == application_id)
        .filter_map(|m| {
            let keys = m.keys.as_ref()?;
            let theirs = app_keys.get(&m.dev_eui)?;
            (theirs.as_deref() != Some(keys.app_key.as_str())).then(|| Difference::KeyMismatch {
                dev_eui: m.dev_eui.clone(),
                serial: m.serial.clone(),
                keys: keys.clone(),
            })
        })
        .collect()
}

/// The meters of `application_id` in service, with keys, that ChirpStack has as devices: those
/// whose keys can be compared.
pub fn comparable<'a>(
    application_id: &str,
    meters: &'a [SyncedMeter],
    devices: &[Device],
) -> Vec<&'a SyncedMeter> {
    let present: std::collections::HashSet<&str> =
        devices.iter().map(|d| d.dev_eui.as_str()).collect();
    meters
        .iter()
        .filter(|m| {
            m.in_service
                && m.application_id == application_id
                && m.keys.is_some()
                && present.contains(m.dev_eui.as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f";
    const OTHER: &str = "11111111-2222-3333-4444-555555555555";

    fn keys(n: u8) -> OtaaKeys {
        OtaaKeys {
            join_eui: "70b3d57ed0000000".into(),
            app_key: format!("{n:02x}").repeat(16),
        }
    }

    fn meter(n: u8, in_service: bool, app: &str, with_keys: bool) -> SyncedMeter {
        SyncedMeter {
            dev_eui: format!("70b3d5e75e0000{n:02x}"),
            serial: format!("122610000{n:05}"),
            application_id: app.into(),
            in_service,
            keys: with_keys.then(|| keys(n)),
        }
    }

    fn device(n: u8) -> Device {
        Device {
            dev_eui: format!("70b3d5e75e0000{n:02x}"),
            name: format!("device {n}"),
            device_profile_id: "p".into(),
        }
    }

    #[test]
    fn equal_sides_differ_in_nothing() {
        let meters = [meter(1, true, APP, true), meter(2, true, APP, false)];
        assert_eq!(diff(APP, &meters, &[device(1), device(2)]), []);
        assert_eq!(diff(APP, &[], &[]), []);
    }

    #[test]
    fn every_kind_of_difference_in_dev_eui_order() {
        let meters = [
            meter(5, true, APP, true),   // missing, has keys: created
            meter(4, true, APP, false),  // missing, no keys: reported
            meter(3, false, APP, true),  // retired, still in ChirpStack: deleted
            meter(2, true, OTHER, true), // moved to another application: deleted
            meter(1, true, APP, true),   // in step
            meter(6, false, APP, true),  // retired and gone: nothing
            meter(7, true, OTHER, true), // another application, not here: nothing
        ];
        let devices = [device(1), device(2), device(3), device(9)];
        let d = diff(APP, &meters, &devices);
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                format!(
                    "extra in ChirpStack: 70b3d5e75e000002 (its meter is registered to application {OTHER})"
                ),
                "extra in ChirpStack: 70b3d5e75e000003 (its meter is out of service)".to_owned(),
                "missing in ChirpStack, no keys to create it: 70b3d5e75e000004 (serial \
                 12261000000004); install it again with joinEui and appKey"
                    .to_owned(),
                "missing in ChirpStack: 70b3d5e75e000005 (serial 12261000000005)".to_owned(),
                "in ChirpStack, unknown to meterhub (left alone): 70b3d5e75e000009 (name \
                 \"device 9\")"
                    .to_owned(),
            ]
        );
        assert_eq!(
            d.iter().map(Difference::is_applied).collect::<Vec<_>>(),
            [true, true, false, true, false]
        );
        assert_eq!(
            d[3],
            Difference::Missing {
                dev_eui: "70b3d5e75e000005".into(),
                serial: "12261000000005".into(),
                keys: keys(5),
            }
        );
    }

    #[test]
    fn keys_are_compared_only_where_both_sides_have_the_device() {
        let meters = [
            meter(1, true, APP, true),
            meter(2, true, APP, true),
            meter(3, true, APP, true),
            meter(4, true, APP, false),
            meter(5, false, APP, true),
        ];
        let devices = [device(1), device(2), device(3), device(4), device(5)];
        let compared: Vec<&str> = comparable(APP, &meters, &devices)
            .iter()
            .map(|m| m.dev_eui.as_str())
            .collect();
        assert_eq!(
            compared,
            ["70b3d5e75e000001", "70b3d5e75e000002", "70b3d5e75e000003"]
        );
        let theirs: HashMap<String, Option<String>> = [
            ("70b3d5e75e000001".to_owned(), Some(keys(1).app_key)),
            ("70b3d5e75e000002".to_owned(), Some(keys(9).app_key)),
            ("70b3d5e75e000003".to_owned(), None),
        ]
        .into_iter()
        .collect();
        let mismatched: Vec<String> = key_mismatches(APP, &meters, &theirs)
            .iter()
            .map(|d| d.dev_eui().to_owned())
            .collect();
        assert_eq!(mismatched, ["70b3d5e75e000002", "70b3d5e75e000003"]);
        // The line names the device, never a key.
        let line = key_mismatches(APP, &meters, &theirs)[0].to_string();
        assert!(
            !line.contains(&keys(2).app_key) && !line.contains(&keys(9).app_key),
            "{line}"
        );
    }
}
