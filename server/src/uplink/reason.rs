//! Why a message was quarantined: a closed set, so metrics and the quarantine list agree.

/// A quarantine reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The payload is not JSON.
    MalformedJson,
    /// The payload is ChirpStack's protobuf encoding (`json = false`), which meterhub does not read.
    Protobuf,
    /// JSON, but not a ChirpStack event of a known type, or the topic does not fit the template.
    UnknownEvent,
    /// The `data` of an uplink does not decode.
    Undecodable,
    /// An uplink on an fPort that carries no meterhub message.
    UnknownFport,
    /// The device is not in the registry.
    UnregisteredDevice,
    /// The serial is malformed or not the one registered for the device.
    BadSerial,
    /// A value outside its plausible range, or a meter clock outside the storage window.
    OutOfRange,
    /// The database refused the message's rows.
    Refused,
    /// The uplink's reading has the time of a stored reading of the same meter but other
    /// values: it was not stored (the rest of the message was applied).
    ConflictingReading,
}

impl Reason {
    /// Number of reasons.
    pub const COUNT: usize = 10;

    /// Every reason, in a fixed order.
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::MalformedJson,
        Reason::Protobuf,
        Reason::UnknownEvent,
        Reason::Undecodable,
        Reason::UnknownFport,
        Reason::UnregisteredDevice,
        Reason::BadSerial,
        Reason::OutOfRange,
        Reason::Refused,
        Reason::ConflictingReading,
    ];

    /// The name stored with the message and used as the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::Protobuf => "protobuf",
            Reason::UnknownEvent => "unknown_event",
            Reason::Undecodable => "undecodable",
            Reason::UnknownFport => "unknown_fport",
            Reason::UnregisteredDevice => "unregistered_device",
            Reason::BadSerial => "bad_serial",
            Reason::OutOfRange => "out_of_range",
            Reason::Refused => "refused",
            Reason::ConflictingReading => "conflicting_reading",
        }
    }

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason with this name.
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_indexes_agree() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(Reason::from_name(r.as_str()), Some(r));
        }
    }
}
