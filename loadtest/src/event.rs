//! The load's ChirpStack `up` events: the project's sample event with this run's device,
//! identity, frame counter and frame (a daily reading, or a TS003 AppTimeReq) spliced in.
//!
//! Each event carries its sequence number twice: as the frame counter (`fCnt`, stored in the
//! reading's `f_cnt` column) and inside its `deduplicationId`, which the server records as the
//! event's identity in the same transaction as the reading. The identity is what the commit
//! reader follows (see `progress`), because it can be read back in order through its key.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use base64::Engine;
use firmware_protocol::{
    ClockSyncUp, ClockSyncUplink, DoorState, GpsTime, Reading, Serial, StatusFlags, Uplink,
    ValveState,
};
use serde_json::{Value, json};

/// The ChirpStack application the load's meters belong to.
pub const APPLICATION_ID: &str = "4c0ad7e5-7e57-4a0d-9b1e-10ad7e575eed";

/// First half of every load meter's DevEUI; the meter number (from 1) fills the second half.
pub const DEV_EUI_PREFIX: &str = "4c0ad7e5";

/// The sample event, as ChirpStack publishes it for a frame two gateways heard.
const SAMPLE: &str = include_str!("../../firmware-protocol/tests/samples/chirpstack/event-up.json");

/// The DevEUI of meter `n` (from 1).
pub fn dev_eui(n: u32) -> String {
    format!("{DEV_EUI_PREFIX}{n:08x}")
}

/// The serial number registered for meter `n` (from 1): manufacturer 12, year 26, gas.
pub fn serial(n: u32) -> Result<Serial> {
    Serial::new(12, 26, 1, n).with_context(|| format!("no serial number for meter {n}"))
}

/// A `deduplicationId` that is a well-formed UUID and names the run and the event's sequence
/// number. The fixed-width hex makes text order within a run the order of sequence numbers,
/// in the bytewise collation and in locale collations alike (every id has its hyphens in the
/// same places and only lowercase hex), so a reader can take a range of them through the
/// identity key.
pub fn dedup_id(run: u32, seq: u64) -> String {
    format!("{run:08x}-0000-4000-8000-{:012x}", seq & 0xffff_ffff_ffff)
}

/// The sequence number in an id made by [`dedup_id`] for `run`; `None` for any other text.
pub fn parse_dedup_id(run: u32, id: &str) -> Option<u64> {
    let prefix = format!("{run:08x}-0000-4000-8000-");
    let hex = id.strip_prefix(&prefix)?;
    if hex.len() != 12
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The sequence number of an event as published by [`EventTemplate::render`], found without
/// parsing the JSON: the pass-through subscriber must cost the broker's measurement as little
/// as possible.
pub fn seq_in_payload(run: u32, payload: &[u8]) -> Option<u64> {
    const KEY: &str = "\"deduplicationId\":\"";
    let text = std::str::from_utf8(payload).ok()?;
    let start = text.find(KEY)? + KEY.len();
    parse_dedup_id(run, text.get(start..start + 36)?)
}

/// What varies from one event to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    DeduplicationId,
    Time,
    DevEui,
    DeviceName,
    FCnt,
    FPort,
    Data,
}

/// The sample event cut around the fields that vary, so that rendering an event is a few
/// copies instead of building and serialising a JSON tree (which would cost the publisher
/// a large share of a core at the rates measured).
#[derive(Debug, Clone)]
pub struct EventTemplate {
    /// Literal text before each field, and after the last one.
    literals: Vec<String>,
    fields: Vec<Field>,
}

/// One event's values.
#[derive(Debug, Clone)]
pub struct EventValues<'a> {
    /// The run, for the identity.
    pub run: u32,
    /// The event's sequence number in the run.
    pub seq: u64,
    /// Meter number, from 1.
    pub meter: u32,
    /// ChirpStack's `time`, RFC 3339.
    pub time: &'a str,
    /// The frame's port: a reading's, or clock synchronisation's.
    pub f_port: u8,
    /// The frame.
    pub frame: &'a [u8],
}

impl EventTemplate {
    /// The sample with its codec `object` removed: meterhub decodes `data` itself and the
    /// integration guide advises leaving ChirpStack's codec off on large fleets.
    pub fn new() -> Result<EventTemplate> {
        let mut v: Value = serde_json::from_str(SAMPLE).context("parsing the sample event")?;
        let marks = [
            (Field::DeduplicationId, "@@dedup@@"),
            (Field::Time, "@@time@@"),
            (Field::DevEui, "@@deveui@@"),
            (Field::DeviceName, "@@name@@"),
            (Field::FCnt, "@@fcnt@@"),
            (Field::FPort, "@@fport@@"),
            (Field::Data, "@@data@@"),
        ];
        v["deduplicationId"] = json!(marks[0].1);
        v["time"] = json!(marks[1].1);
        v["deviceInfo"]["devEui"] = json!(marks[2].1);
        v["deviceInfo"]["deviceName"] = json!(marks[3].1);
        v["deviceInfo"]["applicationId"] = json!(APPLICATION_ID);
        v["fCnt"] = json!(marks[4].1);
        v["fPort"] = json!(marks[5].1);
        v["data"] = json!(marks[6].1);
        v.as_object_mut()
            .context("the sample event is not an object")?
            .remove("object");
        let mut rest = serde_json::to_string(&v)?;
        // The frame counter and port are numbers: their marks go with their quotes.
        rest = rest
            .replace("\"@@fcnt@@\"", "@@fcnt@@")
            .replace("\"@@fport@@\"", "@@fport@@");
        let mut literals = Vec::new();
        let mut fields = Vec::new();
        loop {
            let next = marks
                .iter()
                .filter_map(|(f, m)| rest.find(m).map(|i| (i, *f, m.len())))
                .min_by_key(|(i, _, _)| *i);
            let Some((i, field, len)) = next else { break };
            literals.push(rest[..i].to_owned());
            fields.push(field);
            rest = rest[i + len..].to_owned();
        }
        literals.push(rest);
        if fields.len() != marks.len() {
            bail!("the sample event lacks one of the fields the load varies");
        }
        Ok(EventTemplate { literals, fields })
    }

    /// Writes one event's JSON into `out` (cleared first).
    pub fn render(&self, out: &mut Vec<u8>, v: &EventValues<'_>) {
        out.clear();
        let mut text = String::with_capacity(1_400);
        for (literal, field) in self.literals.iter().zip(&self.fields) {
            text.push_str(literal);
            match field {
                Field::DeduplicationId => text.push_str(&dedup_id(v.run, v.seq)),
                Field::Time => text.push_str(v.time),
                Field::DevEui => text.push_str(&dev_eui(v.meter)),
                Field::DeviceName => {
                    let _ = write!(text, "meter-{:08}", v.meter);
                }
                // ChirpStack's frame counter is 32 bits; the load never gets near that.
                Field::FCnt => {
                    let _ = write!(text, "{}", v.seq as u32);
                }
                Field::FPort => {
                    let _ = write!(text, "{}", v.f_port);
                }
                Field::Data => {
                    base64::engine::general_purpose::STANDARD.encode_string(v.frame, &mut text)
                }
            }
        }
        if let Some(last) = self.literals.last() {
            text.push_str(last);
        }
        out.extend_from_slice(text.as_bytes());
    }
}

/// The topic ChirpStack publishes a device's `up` events on, under `prefix` (empty for the
/// server's topics; the pass-through phase uses one the server does not subscribe to).
pub fn topic(prefix: &str, meter: u32) -> String {
    format!(
        "{prefix}application/{APPLICATION_ID}/device/{}/event/up",
        dev_eui(meter)
    )
}

/// A daily-reading frame for a meter, dated by its clock at `unix_seconds`.
pub fn reading_frame(serial: Serial, unix_seconds: i64, litres: u32) -> Result<Vec<u8>> {
    let meter_time = GpsTime::from_unix(unix_seconds).context("a time GPS time cannot hold")?;
    let m = Uplink::Reading(Reading {
        serial,
        meter_time,
        valve: ValveState::Open,
        door: DoorState::NotFitted,
        battery_millivolts: 3_600,
        battery_percent: 90,
        flags: StatusFlags::empty(),
        gas_volume_litres: Some(litres),
        energy_wh: None,
        voltage_decivolts: None,
        current_milliamps: None,
        gas_temperature_centi_celsius: Some(1_250),
        gas_pressure_pa: Some(102_300),
    });
    let mut buf = [0u8; 64];
    let n = m
        .encode(&mut buf)
        .map_err(|e| anyhow::anyhow!("encoding a reading: {e:?}"))?;
    Ok(buf[..n].to_vec())
}

/// Whether event `seq` is a clock request rather than a reading: one in `every` (none when
/// `every` is 0), the first of each run of `every` events.
pub fn is_clock_request(seq: u64, every: u64) -> bool {
    every > 0 && seq.is_multiple_of(every)
}

/// The request token of event `seq`'s AppTimeReq (4 bits), which its answer must echo.
pub fn clock_token(seq: u64) -> u8 {
    (seq & 0x0f) as u8
}

/// How far behind the event's time a requesting meter's clock is: far enough that the
/// correction is never zero, so an answer is due without the meter asking for one
/// (`AnsRequired` unset, as a device that only wants corrections sends it).
pub const CLOCK_BEHIND_SECONDS: i64 = 5;

/// A TS003 AppTimeReq frame (fPort 202) from a meter whose clock reads `unix_seconds`.
pub fn clock_frame(unix_seconds: i64, token: u8) -> Result<Vec<u8>> {
    let device_time = GpsTime::from_unix(unix_seconds).context("a time GPS time cannot hold")?;
    let frame = ClockSyncUplink::single(ClockSyncUp::AppTimeReq {
        device_time: device_time.0,
        token_req: token & 0x0f,
        ans_required: false,
    });
    let mut buf = [0u8; 16];
    let n = frame
        .encode(&mut buf)
        .map_err(|e| anyhow::anyhow!("encoding an AppTimeReq: {e:?}"))?;
    Ok(buf[..n].to_vec())
}

/// Which meter sends event `seq`, and which of its readings it is: the events go round the
/// fleet, so a batch of fewer events than meters names each meter once, as on a real network
/// where each meter reports once a day.
pub fn meter_and_round(seq: u64, meters: u32) -> (u32, u64) {
    let meters = u64::from(meters.max(1));
    ((seq % meters) as u32 + 1, seq / meters)
}

#[cfg(test)]
mod tests {
    use firmware_protocol::chirpstack::{Event, EventType};

    use super::*;

    fn values(frame: &[u8]) -> EventValues<'_> {
        EventValues {
            run: 0x1234_abcd,
            seq: 70_001,
            meter: 42,
            time: "2026-11-26T10:00:00.000000+00:00",
            f_port: firmware_protocol::PORT_READING,
            frame,
        }
    }

    #[test]
    fn a_rendered_event_is_the_sample_with_this_events_values() {
        let template = EventTemplate::new().expect("template");
        let frame = reading_frame(serial(42).expect("serial"), 1_790_000_000, 7).expect("frame");
        let mut out = Vec::new();
        template.render(&mut out, &values(&frame));
        let Event::Up(up) = Event::from_json(EventType::Up, &out).expect("parses") else {
            panic!("not an up event");
        };
        assert_eq!(up.deduplication_id, "1234abcd-0000-4000-8000-000000011171");
        assert_eq!(up.f_cnt, 70_001);
        assert_eq!(up.f_port, u32::from(firmware_protocol::PORT_READING));
        assert_eq!(up.data.as_slice(), frame.as_slice());
        assert!(up.object.is_none());
        assert_eq!(up.rx_info.len(), 2, "both of the sample's gateways");
        let info = up.device_info.expect("device info");
        assert_eq!(info.dev_eui, "4c0ad7e50000002a");
        assert_eq!(info.application_id, APPLICATION_ID);
        assert_eq!(info.device_name, "meter-00000042");
        assert_eq!(
            up.time.map(|t| t.0.timestamp()),
            Some(1_795_687_200),
            "2026-11-26T10:00:00Z"
        );
    }

    #[test]
    fn events_are_about_the_size_of_the_sample_without_its_codec_object() {
        let template = EventTemplate::new().expect("template");
        let frame = reading_frame(serial(1).expect("serial"), 1_790_000_000, 7).expect("frame");
        let mut out = Vec::new();
        template.render(&mut out, &values(&frame));
        assert!((900..1_400).contains(&out.len()), "{} bytes", out.len());
    }

    #[test]
    fn the_sequence_number_is_found_in_a_payload_without_parsing_it() {
        let template = EventTemplate::new().expect("template");
        let frame = reading_frame(serial(1).expect("serial"), 1_790_000_000, 7).expect("frame");
        let mut out = Vec::new();
        template.render(&mut out, &values(&frame));
        assert_eq!(seq_in_payload(0x1234_abcd, &out), Some(70_001));
        assert_eq!(
            seq_in_payload(0x1234_abce, &out),
            None,
            "another run's event"
        );
        assert_eq!(seq_in_payload(0x1234_abcd, b"{}"), None);
    }

    #[test]
    fn identities_round_trip_and_sort_like_their_sequence_numbers() {
        let ids: Vec<String> = [0, 9, 10, 255, 256, 1 << 40]
            .iter()
            .map(|s| dedup_id(7, *s))
            .collect();
        for (id, seq) in ids.iter().zip([0, 9, 10, 255, 256, 1 << 40]) {
            assert_eq!(parse_dedup_id(7, id), Some(seq));
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        assert_eq!(parse_dedup_id(8, &ids[1]), None);
        assert_eq!(
            parse_dedup_id(7, "00000007-0000-4000-8000-00000000000G"),
            None
        );
    }

    #[test]
    fn events_go_round_the_fleet_one_reading_per_meter_per_round() {
        assert_eq!(meter_and_round(0, 3), (1, 0));
        assert_eq!(meter_and_round(2, 3), (3, 0));
        assert_eq!(meter_and_round(3, 3), (1, 1));
        assert_eq!(meter_and_round(10, 3), (2, 3));
    }

    #[test]
    fn topics_are_chirpstacks_under_an_optional_prefix() {
        assert_eq!(
            topic("", 1),
            format!("application/{APPLICATION_ID}/device/4c0ad7e500000001/event/up")
        );
        assert!(topic("loadtest/1/", 1).starts_with("loadtest/1/application/"));
    }
}
