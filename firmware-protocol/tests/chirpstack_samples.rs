//! The ChirpStack JSON mapping against the sample messages in `tests/samples/chirpstack/`
//! (made by ChirpStack's own serializers) and against the edge cases of the proto3 mapping.

use std::fmt;
use std::fs;
use std::num::NonZeroU8;
use std::path::{Path, PathBuf};

use firmware_protocol::chirpstack::gateway::{
    ConnState, ConnectionState, DownlinkFrame, DownlinkTxAck, DownlinkTxAckItem, GatewayStats,
    TxAckStatus, UplinkFrame,
};
use firmware_protocol::chirpstack::udp::{self, CompactTime, DataRate, ExpandedTime, TxAckError};
use firmware_protocol::chirpstack::{
    AckEvent, Bytes, CrcStatus, DeviceClass, DownlinkCommand, Duration, Event, EventType, LogCode,
    LogLevel, Modulation, Timestamp, Timing, UnknownEventType, UplinkEvent, UplinkRxInfo,
};
use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/samples/chirpstack");

/// Every `*.json` below the sample directory, as paths relative to it with `/` separators.
fn sample_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("sample directory is readable") {
            let path = entry.expect("directory entry is readable").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                out.push(path);
            }
        }
    }
    let root = Path::new(SAMPLES);
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut names: Vec<String> = files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(root).expect("file is below the root");
            relative.to_string_lossy().replace('\\', "/")
        })
        .collect();
    names.sort();
    names
}

fn read_sample(name: &str) -> Vec<u8> {
    fs::read(Path::new(SAMPLES).join(name)).expect("sample is readable")
}

/// Parses a sample with the type its file name names and writes it back compactly. A file
/// with no type here fails, so a new sample cannot go untested.
fn round_trip(name: &str, json: &[u8]) -> Vec<u8> {
    fn through<T: DeserializeOwned + Serialize>(name: &str, json: &[u8]) -> Vec<u8> {
        let message: T = serde_json::from_slice(json)
            .unwrap_or_else(|error| panic!("{name} does not parse: {error}"));
        serde_json::to_vec(&message).expect("a message serialises")
    }

    match name {
        "gateway/event-up.json" => through::<UplinkFrame>(name, json),
        "gateway/event-stats.json" => through::<GatewayStats>(name, json),
        "gateway/event-ack.json" => through::<DownlinkTxAck>(name, json),
        "gateway/command-down.json" => through::<DownlinkFrame>(name, json),
        "gateway/state-conn.json" => through::<ConnState>(name, json),
        "gateway/udp-push-data.json" => through::<udp::PushData>(name, json),
        "gateway/udp-pull-resp.json" => through::<udp::PullResp>(name, json),
        "gateway/udp-tx-ack.json" => through::<udp::TxAck>(name, json),
        _ if !name.contains('/') && name.starts_with("command-down") => {
            through::<DownlinkCommand>(name, json)
        }
        _ if !name.contains('/') && name.starts_with("event-") => {
            // `event-{type}[-{variant}].json`
            let segment = name["event-".len()..]
                .split(['-', '.'])
                .next()
                .unwrap_or_default();
            let event_type: EventType = segment
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {segment:?} is not an event type"));
            Event::from_json(event_type, json)
                .unwrap_or_else(|error| panic!("{name} does not parse: {error}"))
                .to_json()
                .expect("an event serialises")
        }
        _ => panic!("no message type for sample {name}: add it to round_trip()"),
    }
}

/// The sample's text without the whitespace outside strings: the form ChirpStack publishes.
fn minify(json: &[u8]) -> String {
    let text = std::str::from_utf8(json).expect("samples are UTF-8");
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// A JSON document reduced to its object keys in document order.
enum Tree {
    Leaf,
    List(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TreeVisitor;

        impl<'de> Visitor<'de> for TreeVisitor {
            type Value = Tree;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Leaf)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Tree::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Tree::Object(members))
            }
        }

        deserializer.deserialize_any(TreeVisitor)
    }
}

/// Fields holding proto maps or a `Struct`, whose key order ChirpStack leaves arbitrary.
const MAP_FIELDS: &[&str] = &[
    "tags",
    "context",
    "metadata",
    "object",
    "meta",
    "txPacketsPerFrequency",
    "rxPacketsPerFrequency",
    "txPacketsPerStatus",
];

/// Every object key as a path (`rxInfo[1].location.altitude`) in document order; with
/// `sort_maps`, the keys inside map fields sorted.
fn key_paths(json: &[u8], sort_maps: bool) -> Vec<String> {
    fn collect(tree: &Tree, path: &str, in_map: bool, sort_maps: bool, out: &mut Vec<String>) {
        match tree {
            Tree::Leaf => {}
            Tree::List(items) => {
                for (index, item) in items.iter().enumerate() {
                    collect(item, &format!("{path}[{index}]"), in_map, sort_maps, out);
                }
            }
            Tree::Object(members) => {
                let start = out.len();
                for (key, value) in members {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    out.push(child.clone());
                    let is_map = in_map || MAP_FIELDS.contains(&key.as_str());
                    collect(value, &child, is_map, sort_maps, out);
                }
                if in_map && sort_maps {
                    out[start..].sort();
                }
            }
        }
    }

    let tree: Tree = serde_json::from_slice(json).expect("valid JSON");
    let mut out = Vec::new();
    collect(&tree, "", false, sort_maps, &mut out);
    out
}

/// `event-status.json` holds an f32 written by ChirpStack; allow for its rounding.
fn assert_same_value(name: &str, expected: &Value, actual: &Value) {
    if name == "event-status.json" {
        let (mut expected, mut actual) = (expected.clone(), actual.clone());
        let take = |value: &mut Value| {
            value
                .as_object_mut()
                .and_then(|object| object.remove("batteryLevel"))
                .and_then(|level| level.as_f64())
                .expect("batteryLevel is a number")
        };
        let (want, got) = (take(&mut expected), take(&mut actual));
        assert!(
            (want - got).abs() <= 1e-4 * want.abs(),
            "{name}: batteryLevel {got} != {want}"
        );
        assert_eq!(expected, actual, "{name} changed in a round trip");
    } else {
        assert_eq!(expected, actual, "{name} changed in a round trip");
    }
}

#[test]
fn every_sample_round_trips_to_the_same_json() {
    let names = sample_files();
    assert!(names.len() >= 19, "expected all samples, found {names:?}");
    for name in &names {
        let original = read_sample(name);
        let written = round_trip(name, &original);
        let expected: Value = serde_json::from_slice(&original).expect("sample is JSON");
        let actual: Value = serde_json::from_slice(&written).expect("output is JSON");
        assert_same_value(name, &expected, &actual);
    }
}

#[test]
fn every_sample_keeps_its_field_order() {
    for name in &sample_files() {
        let original = read_sample(name);
        let written = round_trip(name, &original);
        assert_eq!(
            key_paths(&original, true),
            key_paths(&written, true),
            "{name}: field order differs (map members compared sorted)"
        );
    }
}

#[test]
fn compact_output_is_byte_identical_to_the_wire_form() {
    // Where the sample's map members happen to be in sorted order, which is the order this
    // crate writes maps in, the output must equal the sample's compact form byte for byte.
    let mut compared = 0;
    for name in &sample_files() {
        let original = read_sample(name);
        if key_paths(&original, false) != key_paths(&original, true) {
            continue;
        }
        let written = String::from_utf8(round_trip(name, &original)).expect("output is UTF-8");
        assert_eq!(minify(&original), written, "{name}");
        compared += 1;
    }
    assert!(
        compared >= 12,
        "only {compared} samples compared byte for byte"
    );
}

#[test]
fn samples_parse_into_the_expected_values() {
    let Event::Up(up) = Event::from_json(EventType::Up, &read_sample("event-up.json")).unwrap()
    else {
        panic!("not an uplink");
    };
    assert_eq!(up.f_cnt, 1234);
    assert_eq!(
        up.data.as_slice(),
        &[0x01, 0x00, 0x12, 0xd6, 0x87, 0x08, 0xfd, 0x00]
    );
    assert_eq!(up.object.as_ref().unwrap()["energyWh"], json!(1234567.0));
    assert_eq!(
        up.device_info.as_ref().unwrap().device_class_enabled,
        DeviceClass::ClassA
    );
    assert_eq!(up.rx_info.len(), 2);
    assert_eq!(up.rx_info[0].crc_status, CrcStatus::CrcOk);
    assert_eq!(up.rx_info[0].context.as_slice(), &[0x3b, 0x9a, 0xca, 0x07]);
    assert_eq!(up.rx_info[1].gw_time, None);
    let lora = up
        .tx_info
        .as_ref()
        .unwrap()
        .modulation
        .as_ref()
        .unwrap()
        .as_lora()
        .unwrap();
    assert_eq!((lora.spreading_factor, lora.bandwidth), (7, 125_000));

    let Event::TxAck(txack) =
        Event::from_json(EventType::TxAck, &read_sample("event-txack.json")).unwrap()
    else {
        panic!("not a txack");
    };
    assert_eq!(txack.downlink_id, 2_918_734_011);
    let timing = txack.tx_info.as_ref().unwrap().timing.as_ref().unwrap();
    let Timing::Delay(delay) = timing else {
        panic!("not a delay: {timing:?}")
    };
    assert_eq!(
        delay.delay,
        Some(Duration(core::time::Duration::from_secs(1)))
    );

    // f32 fields are written with the shortest text that reads back as the same f32, as
    // ChirpStack writes them.
    let status = Event::from_json(EventType::Status, &read_sample("event-status.json")).unwrap();
    let written = String::from_utf8(status.to_json().unwrap()).unwrap();
    assert!(written.contains(r#""batteryLevel":88.18897"#), "{written}");

    let command = DownlinkCommand::from_json(&read_sample("command-down.json")).unwrap();
    assert_eq!(command.id, txack.queue_item_id);
    assert!(command.id.is_some());

    let push: udp::PushData =
        serde_json::from_slice(&read_sample("gateway/udp-push-data.json")).unwrap();
    let rxpk = &push.rxpk[0];
    assert_eq!(
        rxpk.datr,
        DataRate::Lora {
            spreading_factor: 7,
            bandwidth_khz: 125
        }
    );
    assert_eq!(rxpk.tmst.to_be_bytes(), [0x3b, 0x9a, 0xca, 0x07]);
    assert_eq!(
        push.stat.unwrap().time.unwrap().0.to_rfc3339(),
        "2026-07-23T10:15:00+00:00"
    );
}

#[test]
fn timestamps_are_written_with_plus_zero_offset() {
    let at = |text: &str| -> String {
        let time: Timestamp = text.parse().unwrap();
        serde_json::to_string(&time).unwrap()
    };
    assert_eq!(at("2026-07-23T10:15:30Z"), r#""2026-07-23T10:15:30+00:00""#);
    assert_eq!(
        at("2026-07-23T10:15:30.120Z"),
        r#""2026-07-23T10:15:30.120+00:00""#
    );
    assert_eq!(
        at("2026-07-23T10:15:30.123400Z"),
        r#""2026-07-23T10:15:30.123400+00:00""#
    );
    assert_eq!(
        at("2026-07-23T10:15:30.1234567Z"),
        r#""2026-07-23T10:15:30.123456700+00:00""#
    );
}

#[test]
fn timestamp_with_z_is_accepted() {
    let z: Timestamp = serde_json::from_str(r#""2026-07-23T10:15:30.5Z""#).unwrap();
    let offset: Timestamp = serde_json::from_str(r#""2026-07-23T12:15:30.500+02:00""#).unwrap();
    assert_eq!(z, offset);
    assert_eq!(z.to_string(), "2026-07-23T10:15:30.500+00:00");
}

#[test]
fn timestamp_without_offset_is_rejected() {
    assert!(serde_json::from_str::<Timestamp>(r#""2026-07-23T10:15:30""#).is_err());
    assert!(serde_json::from_str::<Timestamp>(r#""yesterday""#).is_err());
    assert!(serde_json::from_str::<Timestamp>("1753265730").is_err());
}

#[test]
fn durations_round_trip_their_proto_text() {
    for text in [
        "0s",
        "1s",
        "2s",
        "1.500s",
        "0.000001s",
        "0.000000001s",
        "12.345678901s",
        "3.000100s",
    ] {
        let duration: Duration = text
            .parse()
            .unwrap_or_else(|_| panic!("{text} does not parse"));
        assert_eq!(duration.to_string(), text);
        assert_eq!(
            serde_json::to_string(&duration).unwrap(),
            format!("\"{text}\"")
        );
    }
    let lenient: Duration = "1.5s".parse().unwrap();
    assert_eq!(lenient.0, core::time::Duration::from_millis(1500));
    assert_eq!(lenient.to_string(), "1.500s");
}

#[test]
fn malformed_durations_are_rejected() {
    for text in [
        "",
        "s",
        "1",
        "-1s",
        "+1s",
        "1.s",
        ".5s",
        "1.0000000001s",
        "1e3s",
        "1,5s",
        " 1s",
    ] {
        assert!(text.parse::<Duration>().is_err(), "{text:?} was accepted");
    }
}

#[test]
fn url_safe_unpadded_base64_is_accepted() {
    let expected = [0xfb, 0xef, 0xff, 0x01];
    for text in ["++//AQ==", "++//AQ", "--__AQ==", "--__AQ"] {
        let bytes: Bytes = serde_json::from_value(json!(text)).unwrap();
        assert_eq!(bytes.as_slice(), &expected, "{text}");
        assert_eq!(serde_json::to_value(&bytes).unwrap(), json!("++//AQ=="));
    }
}

#[test]
fn invalid_base64_is_an_error() {
    for text in ["A", "AQ=A", "AQ*=", "+-/_"] {
        assert!(
            serde_json::from_value::<Bytes>(json!(text)).is_err(),
            "{text:?} was accepted"
        );
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let payload = json!({
        "deduplicationId": "8b3f4a6e-2c1d-4e5f-9a7b-0c1d2e3f4a5b",
        "futureTopLevel": {"nested": [1, 2, 3]},
        "deviceInfo": {"devEui": "a1b2c3d4e5f60001", "futureDeviceField": true},
        "fPort": 1,
        "rxInfo": [{"gatewayId": "0016c001ff1e5a7b", "futureRxField": 1.5}],
        "txInfo": {"frequency": 868100000, "modulation": {"lora": {"spreadingFactor": 9, "futureLora": "x"}}},
    });
    let event = Event::from_json(EventType::Up, payload.to_string().as_bytes()).unwrap();
    let Event::Up(up) = &event else {
        panic!("not an uplink")
    };
    assert_eq!(up.device_info.as_ref().unwrap().dev_eui, "a1b2c3d4e5f60001");
    assert_eq!(up.rx_info[0].gateway_id, "0016c001ff1e5a7b");
    let modulation = up.tx_info.as_ref().unwrap().modulation.as_ref().unwrap();
    assert_eq!(modulation.as_lora().unwrap().spreading_factor, 9);
    let written = String::from_utf8(event.to_json().unwrap()).unwrap();
    assert!(!written.contains("future"), "{written}");
}

#[test]
fn missing_nested_fields_parse_as_absent() {
    let payload = br#"{"rxInfo":[{}],"txInfo":{"modulation":{}},"deviceInfo":{}}"#;
    let Event::Up(up) = Event::from_json(EventType::Up, payload).unwrap() else {
        panic!("not an uplink");
    };
    assert_eq!(up.rx_info, vec![UplinkRxInfo::default()]);
    assert_eq!(up.tx_info.as_ref().unwrap().modulation, None);
    assert_eq!(
        up.device_info.as_ref().unwrap().device_class_enabled,
        DeviceClass::ClassA
    );
    assert_eq!(up.time, None);
    assert_eq!(serde_json::to_string(&up.rx_info[0]).unwrap(), "{}");

    // A modulation this version does not know reads as none rather than failing the event.
    let payload = br#"{"txInfo":{"frequency":868100000,"modulation":{"chirp2030":{}}}}"#;
    let Event::Up(up) = Event::from_json(EventType::Up, payload).unwrap() else {
        panic!("not an uplink");
    };
    assert_eq!(up.tx_info.unwrap().modulation, None);

    let empty = Event::from_json(EventType::Log, b"{}").unwrap();
    assert_eq!(empty.time(), None);
    assert_eq!(empty.device_info(), None);
}

#[test]
fn integration_defaults_are_always_written_and_absent_messages_never() {
    assert_eq!(
        serde_json::to_string(&UplinkEvent::default()).unwrap(),
        r#"{"deduplicationId":"","devAddr":"","adr":false,"dr":0,"fCnt":0,"fPort":0,"confirmed":false,"data":"","rxInfo":[],"regionConfigId":""}"#
    );
    let event = Event::from_json(
        EventType::Ack,
        br#"{"queueItemId":"0c9a4e1f-3b7d-4f2a-9e8c-6d1b5a3f7e20","time":null}"#,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(event.to_json().unwrap()).unwrap(),
        r#"{"deduplicationId":"","queueItemId":"0c9a4e1f-3b7d-4f2a-9e8c-6d1b5a3f7e20","acknowledged":false,"fCntDown":0}"#
    );
    assert_eq!(
        serde_json::to_string(&AckEvent::default()).unwrap(),
        r#"{"deduplicationId":"","queueItemId":"","acknowledged":false,"fCntDown":0}"#
    );
}

#[test]
fn queue_item_ids_are_uuids_or_empty() {
    let Event::TxAck(txack) = Event::from_json(EventType::TxAck, br#"{"queueItemId":""}"#).unwrap()
    else {
        panic!("not a txack");
    };
    assert_eq!(txack.queue_item_id, None);
    let id = "0C9A4E1F-3B7D-4F2A-9E8C-6D1B5A3F7E20";
    let payload = format!(r#"{{"queueItemId":"{id}"}}"#);
    let Event::Ack(ack) = Event::from_json(EventType::Ack, payload.as_bytes()).unwrap() else {
        panic!("not an ack");
    };
    assert_eq!(ack.queue_item_id, Some(id.parse().unwrap()));
    assert!(Event::from_json(EventType::Ack, br#"{"queueItemId":"x"}"#).is_err());
}

#[test]
fn numbers_in_object_are_written_as_doubles() {
    let up = UplinkEvent {
        object: json!({"a": 1, "b": [2], "c": {"d": 3}})
            .as_object()
            .cloned(),
        ..UplinkEvent::default()
    };
    let written = serde_json::to_string(&up).unwrap();
    assert!(
        written.contains(r#""object":{"a":1.0,"b":[2.0],"c":{"d":3.0}}"#),
        "{written}"
    );

    // Read as any number; non-numbers and other fields are untouched.
    let payload = br#"{"fCnt":7,"object":{"e":[],"n":-4,"s":"7","t":true,"x":0.5,"z":null}}"#;
    let event = Event::from_json(EventType::Up, payload).unwrap();
    let written = String::from_utf8(event.to_json().unwrap()).unwrap();
    assert!(written.contains(r#""fCnt":7,"#), "{written}");
    assert!(
        written.contains(r#""object":{"e":[],"n":-4.0,"s":"7","t":true,"x":0.5,"z":null}"#),
        "{written}"
    );
}

#[test]
fn unknown_log_code_is_kept() {
    let payload = br#"{"level":"CRITICAL","code":"DOWNLINK_TELEPATHY","description":"d","context":{"a":"b"}}"#;
    let event = Event::from_json(EventType::Log, payload).unwrap();
    let Event::Log(log) = &event else {
        panic!("not a log")
    };
    assert_eq!(log.level, LogLevel::Other("CRITICAL".into()));
    assert_eq!(log.code, LogCode::Other("DOWNLINK_TELEPATHY".into()));
    assert_eq!(log.code.as_str(), "DOWNLINK_TELEPATHY");
    assert_eq!(
        String::from_utf8(event.to_json().unwrap()).unwrap(),
        r#"{"level":"CRITICAL","code":"DOWNLINK_TELEPATHY","description":"d","context":{"a":"b"}}"#
    );
}

#[test]
fn enum_numbers_are_accepted() {
    let payload = br#"{"level":1,"code":2}"#;
    let Event::Log(log) = Event::from_json(EventType::Log, payload).unwrap() else {
        panic!("not a log");
    };
    assert_eq!(
        (log.level, log.code),
        (LogLevel::Warning, LogCode::UplinkCodec)
    );

    let rx: UplinkRxInfo = serde_json::from_str(r#"{"crcStatus":2}"#).unwrap();
    assert_eq!(rx.crc_status, CrcStatus::CrcOk);
    let rx: UplinkRxInfo = serde_json::from_str(r#"{"crcStatus":7}"#).unwrap();
    assert_eq!(rx.crc_status, CrcStatus::Other("7".into()));
}

#[test]
fn command_without_expiry_omits_expires_at() {
    let command = DownlinkCommand::new("a1b2c3d4e5f60001", port(10), vec![0x02, 0x01, 0x00, 0x3c]);
    assert_eq!(
        String::from_utf8(command.to_json().unwrap()).unwrap(),
        r#"{"id":"","devEui":"a1b2c3d4e5f60001","confirmed":false,"fPort":10,"data":"AgEAPA=="}"#
    );

    let with_id_and_expiry = DownlinkCommand {
        id: Some("0c9a4e1f-3b7d-4f2a-9e8c-6d1b5a3f7e20".parse().unwrap()),
        confirmed: true,
        expires_at: Some("2026-07-24T10:00:00Z".parse().unwrap()),
        ..command
    };
    assert_eq!(
        String::from_utf8(with_id_and_expiry.to_json().unwrap()).unwrap(),
        r#"{"id":"0c9a4e1f-3b7d-4f2a-9e8c-6d1b5a3f7e20","devEui":"a1b2c3d4e5f60001","confirmed":true,"fPort":10,"data":"AgEAPA==","expiresAt":"2026-07-24T10:00:00+00:00"}"#
    );
}

fn port(f_port: u8) -> NonZeroU8 {
    NonZeroU8::new(f_port).unwrap()
}

#[test]
fn new_command_has_a_lowercase_dev_eui() {
    let command = DownlinkCommand::new("A1B2C3D4E5F6000A", port(202), [0x01]);
    assert_eq!(command.dev_eui, "a1b2c3d4e5f6000a");
    assert_eq!(command.f_port, 202);
}

#[test]
fn command_with_f_port_0_is_not_written() {
    // ChirpStack drops such a command, reporting it only in its own log.
    let command = DownlinkCommand {
        f_port: 0,
        ..DownlinkCommand::new("a1b2c3d4e5f60001", port(10), [0x01])
    };
    let error = command.to_json().unwrap_err();
    assert!(error.to_string().contains("fPort 0"), "{error}");
    assert!(serde_json::to_vec(&command).is_err());
    assert!(DownlinkCommand::default().to_json().is_err());
}

#[test]
fn command_is_read_leniently_for_inspection() {
    let command = DownlinkCommand::from_json(
        br#"{"dev_eui":"a1b2c3d4e5f60001","f_port":5,"expires_at":"2026-07-24T10:00:00Z","extra":1}"#,
    )
    .unwrap();
    assert_eq!(
        (command.dev_eui.as_str(), command.f_port, command.id),
        ("a1b2c3d4e5f60001", 5, None)
    );
    assert!(command.expires_at.is_some());
    assert!(command.data.is_empty());

    assert!(DownlinkCommand::from_json(br#"{"id":"not-a-uuid"}"#).is_err());
    // Stricter than ChirpStack, which takes quoted numbers and wraps fPorts above 255.
    assert!(DownlinkCommand::from_json(br#"{"fPort":256}"#).is_err());
    assert!(DownlinkCommand::from_json(br#"{"fPort":"10"}"#).is_err());
    assert!(DownlinkCommand::from_json(br#"{"data":null}"#).is_err());
    assert!(DownlinkCommand::from_json(br#"["", "a1b2c3d4e5f60001", false, 10, ""]"#).is_err());
}

#[test]
fn event_type_parses_topic_segments() {
    for (segment, event_type) in [
        ("up", EventType::Up),
        ("join", EventType::Join),
        ("ack", EventType::Ack),
        ("txack", EventType::TxAck),
        ("status", EventType::Status),
        ("log", EventType::Log),
        ("location", EventType::Location),
    ] {
        assert_eq!(segment.parse::<EventType>(), Ok(event_type));
        assert_eq!(event_type.to_string(), segment);
        let topic = format!(
            "application/3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23/device/a1b2c3d4e5f60001/event/{segment}"
        );
        assert_eq!(EventType::from_topic(&topic), Ok(event_type));
    }
    assert_eq!(EventType::ALL.len(), 7);
    for unknown in ["integration", "UP", "", "up/"] {
        assert_eq!(
            EventType::from_topic(unknown),
            Err(UnknownEventType),
            "{unknown:?}"
        );
    }
}

#[test]
fn malformed_event_reports_an_error_not_a_panic() {
    let malformed: &[&[u8]] = &[
        b"",
        b"not json",
        b"{",
        b"[]",
        b"42",
        b"null",
        b"\xff\xfe",
        br#"{"time":"yesterday"}"#,
        br#"{"time":"2026-07-23T10:15:30"}"#,
        br#"{"time":1753265730}"#,
        br#"{"deviceInfo":"a1b2c3d4e5f60001"}"#,
        br#"{"deviceInfo":{"tags":{"a":1}}}"#,
    ];
    for event_type in EventType::ALL {
        for payload in malformed {
            assert!(
                Event::from_json(event_type, payload).is_err(),
                "{event_type} accepted {:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }
    for payload in [
        &br#"{"data":"***"}"#[..],
        br#"{"fCnt":-1}"#,
        br#"{"fCnt":4294967296}"#,
        br#"{"adr":"yes"}"#,
        br#"{"rxInfo":{}}"#,
        br#"{"rxInfo":[{"snr":"loud"}]}"#,
        br#"{"rxInfo":[{"timeSinceGpsEpoch":"1h"}]}"#,
    ] {
        assert!(
            Event::from_json(EventType::Up, payload).is_err(),
            "{:?}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn ignored_tx_ack_item_is_written_as_an_empty_object() {
    let ack = DownlinkTxAck {
        gateway_id: "0016c001ff1e5a7b".into(),
        downlink_id: 7,
        items: vec![
            DownlinkTxAckItem {
                status: TxAckStatus::Ok,
            },
            DownlinkTxAckItem::default(),
        ],
    };
    assert_eq!(
        serde_json::to_string(&ack).unwrap(),
        r#"{"gatewayId":"0016c001ff1e5a7b","downlinkId":7,"items":[{"status":"OK"},{}]}"#
    );
}

#[test]
fn offline_connection_state_is_left_out_as_a_zero_value() {
    let offline = ConnState {
        gateway_id: "0016c001ff1e5a7b".into(),
        state: ConnectionState::Offline,
    };
    let json = serde_json::to_string(&offline).unwrap();
    assert_eq!(json, r#"{"gatewayId":"0016c001ff1e5a7b"}"#);
    assert_eq!(serde_json::from_str::<ConnState>(&json).unwrap(), offline);
}

#[test]
fn gateway_timing_and_modulation_are_oneofs() {
    let immediately: Timing = serde_json::from_str(r#"{"immediately":{}}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&immediately).unwrap(),
        r#"{"immediately":{}}"#
    );
    let gps: Timing =
        serde_json::from_str(r#"{"gpsEpoch":{"timeSinceGpsEpoch":"1437000000.250s"}}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&gps).unwrap(),
        r#"{"gpsEpoch":{"timeSinceGpsEpoch":"1437000000.250s"}}"#
    );
    let fsk: Modulation = serde_json::from_str(r#"{"fsk":{"datarate":50000}}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&fsk).unwrap(),
        r#"{"fsk":{"datarate":50000}}"#
    );
    assert!(serde_json::from_str::<Modulation>("{}").is_err());
}

#[test]
fn udp_tx_ack_error_maps_to_a_gateway_status() {
    let status = |json: &str| {
        serde_json::from_str::<udp::TxAck>(json)
            .unwrap()
            .txpk_ack
            .status()
    };
    assert_eq!(status(r#"{"txpk_ack":{"error":"NONE"}}"#), TxAckStatus::Ok);
    assert_eq!(status(r#"{"txpk_ack":{"error":""}}"#), TxAckStatus::Ok);
    assert_eq!(
        status(r#"{"txpk_ack":{"warn":"TX_POWER","value":14}}"#),
        TxAckStatus::Ok
    );
    assert_eq!(
        status(r#"{"txpk_ack":{"error":"TOO_LATE"}}"#),
        TxAckStatus::TooLate
    );
    assert_eq!(
        status(r#"{"txpk_ack":{"error":"COLLISION_BEACON"}}"#),
        TxAckStatus::CollisionBeacon
    );
    assert_eq!(
        status(r#"{"txpk_ack":{"error":"SOLAR_FLARE"}}"#),
        TxAckStatus::InternalError
    );
    assert_eq!(
        TxAckError::from_name("SOLAR_FLARE"),
        TxAckError::Other("SOLAR_FLARE".into())
    );
}

#[test]
fn udp_data_rates_round_trip() {
    for (json, data_rate) in [
        (
            r#""SF12BW125""#,
            DataRate::Lora {
                spreading_factor: 12,
                bandwidth_khz: 125,
            },
        ),
        (
            r#""SF7BW500""#,
            DataRate::Lora {
                spreading_factor: 7,
                bandwidth_khz: 500,
            },
        ),
        (r#""M0CW137""#, DataRate::LrFhss { ocw_khz: 137 }),
        ("50000", DataRate::Fsk(50_000)),
        (r#""SF7""#, DataRate::Other("SF7".into())),
    ] {
        assert_eq!(
            serde_json::from_str::<DataRate>(json).unwrap(),
            data_rate,
            "{json}"
        );
        assert_eq!(serde_json::to_string(&data_rate).unwrap(), json);
    }
}

#[test]
fn semtech_times_use_their_own_formats() {
    let rx: CompactTime = serde_json::from_str(r#""2026-07-23T10:15:30Z""#).unwrap();
    assert_eq!(
        serde_json::to_string(&rx).unwrap(),
        r#""2026-07-23T10:15:30.000000Z""#
    );
    let stat: ExpandedTime = serde_json::from_str(r#""2026-07-23 10:15:00 GMT""#).unwrap();
    assert_eq!(
        stat.0,
        "2026-07-23T10:15:00Z".parse::<Timestamp>().unwrap().0
    );
    assert_eq!(
        serde_json::to_string(&stat).unwrap(),
        r#""2026-07-23 10:15:00 GMT""#
    );
    let rfc: ExpandedTime = serde_json::from_str(r#""2026-07-23T10:15:00Z""#).unwrap();
    assert_eq!(rfc, stat);
    assert!(serde_json::from_str::<ExpandedTime>(r#""23/07/2026""#).is_err());
}
