//! The golden vectors in `vectors/*.json` against the Rust codec, and the TS003 vectors
//! against ChirpStack's own `lrwn` implementation of the clock-synchronisation package.

use std::collections::BTreeSet;
use std::path::PathBuf;

use firmware_protocol::{
    ClockSyncDown, ClockSyncUp, Downlink, MAX_FRAME_LEN, Uplink, decode_downlink, decode_uplink,
};
use lrwn::applayer::clocksync::v1 as lrwn_clock;
use serde_json::Value;

struct Vector {
    file: String,
    name: String,
    fport: u8,
    uplink: bool,
    bytes: Option<Vec<u8>>,
    json: Option<Value>,
    error: Option<String>,
    encode_error: Option<String>,
}

fn vectors() -> Vec<Vector> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("vectors folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        for v in doc["vectors"].as_array().expect("vectors array") {
            let direction = v["direction"].as_str().expect("direction");
            assert!(
                direction == "uplink" || direction == "downlink",
                "{file}: direction {direction}"
            );
            out.push(Vector {
                file: file.clone(),
                name: v["name"].as_str().expect("name").to_owned(),
                fport: u8::try_from(v["fPort"].as_u64().expect("fPort")).expect("fPort u8"),
                uplink: direction == "uplink",
                bytes: v["hex"].as_str().map(|h| hex::decode(h).expect("hex")),
                json: v.get("json").cloned(),
                error: v["error"].as_str().map(str::to_owned),
                encode_error: v["encodeError"].as_str().map(str::to_owned),
            });
        }
    }
    out
}

fn decode(v: &Vector, bytes: &[u8]) -> Result<Value, firmware_protocol::Error> {
    if v.uplink {
        decode_uplink(v.fport, bytes).map(|m| serde_json::to_value(m).expect("serialise"))
    } else {
        decode_downlink(v.fport, bytes).map(|m| serde_json::to_value(m).expect("serialise"))
    }
}

fn encode(v: &Vector, json: &Value) -> Result<(u8, Vec<u8>), firmware_protocol::Error> {
    let mut buf = [0u8; 64];
    let (port, n) = if v.uplink {
        let m: Uplink = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{}: {}: {e}", v.file, v.name));
        (m.fport(), m.encode(&mut buf)?)
    } else {
        let m: Downlink = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{}: {}: {e}", v.file, v.name));
        (m.fport(), m.encode(&mut buf)?)
    };
    Ok((port, buf[..n].to_vec()))
}

#[test]
fn every_valid_vector_decodes_to_its_json_and_encodes_to_its_bytes() {
    let mut checked = 0;
    for v in vectors() {
        let (Some(bytes), Some(json), None) = (&v.bytes, &v.json, &v.error) else {
            continue;
        };
        let decoded = decode(&v, bytes).unwrap_or_else(|e| panic!("{}: {}: {e}", v.file, v.name));
        assert_eq!(&decoded, json, "{}: {}: decoded JSON", v.file, v.name);
        let (port, encoded) = encode(&v, json).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(port, v.fport, "{}: fPort", v.name);
        assert_eq!(
            hex::encode(&encoded),
            hex::encode(bytes),
            "{}: bytes",
            v.name
        );
        assert!(
            bytes.len() <= MAX_FRAME_LEN,
            "{}: longer than 51 bytes",
            v.name
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} valid vectors");
}

#[test]
fn every_invalid_vector_fails_with_its_exact_error() {
    let mut checked = 0;
    for v in vectors() {
        let (Some(bytes), Some(expected)) = (&v.bytes, &v.error) else {
            continue;
        };
        match decode(&v, bytes) {
            Ok(m) => panic!("{}: {}: decoded as {m}", v.file, v.name),
            Err(e) => assert_eq!(&e.to_string(), expected, "{}: {}", v.file, v.name),
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} invalid-frame vectors");
}

#[test]
fn every_refused_downlink_fails_to_encode_with_its_exact_error() {
    let mut checked = 0;
    for v in vectors() {
        let (Some(json), Some(expected)) = (&v.json, &v.encode_error) else {
            continue;
        };
        match encode(&v, json) {
            Ok((_, bytes)) => panic!("{}: encoded as {}", v.name, hex::encode(bytes)),
            Err(e) => assert_eq!(&e.to_string(), expected, "{}", v.name),
        }
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn vectors_cover_every_message_and_command() {
    let mut seen = BTreeSet::new();
    for v in vectors() {
        let (Some(json), None, None) = (&v.json, &v.error, &v.encode_error) else {
            continue;
        };
        let message = json["message"].as_str().expect("message tag").to_owned();
        if let Some(c) = json["command"].as_str() {
            seen.insert(format!("command/{c}"));
        }
        for c in json["commands"].as_array().into_iter().flatten() {
            seen.insert(format!(
                "clockSync/{}",
                c["command"].as_str().expect("command")
            ));
        }
        if let Some(k) = json["kind"].as_str() {
            seen.insert(format!("alarm/{k}"));
        }
        seen.insert(message);
    }
    let expected = [
        "reading",
        "alarm",
        "selfTest",
        "deviceInfo",
        "command",
        "clockSync",
        "command/valveOpen",
        "command/valveClose",
        "command/runSelfTest",
        "command/readNow",
        "command/sendInfo",
        "command/setReportingInterval",
        "command/disconnect",
        "clockSync/packageVersionReq",
        "clockSync/packageVersionAns",
        "clockSync/appTimeReq",
        "clockSync/appTimeAns",
        "clockSync/deviceAppTimePeriodicityReq",
        "clockSync/deviceAppTimePeriodicityAns",
        "clockSync/forceDeviceResyncReq",
        "alarm/magneticTamper",
        "alarm/movement",
        "alarm/cableCut",
        "alarm/doorOpen",
        "alarm/lowBattery",
        "alarm/overConsumption",
        "alarm/valveOpened",
        "alarm/valveClosed",
        "alarm/leak",
        "alarm/reverseFlow",
        "alarm/clockLost",
    ];
    for e in expected {
        assert!(seen.contains(e), "no vector for {e}");
    }
}

/// Splits a valid TS003 frame into its commands' byte ranges using our decoder's sizes.
fn split_commands(uplink: bool, frame: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = frame;
    while let Some(&cid) = rest.first() {
        let size = match (uplink, cid) {
            (true, 0x00) => 3,
            (true, _) => 6,
            (false, 0x00) => 1,
            (false, 0x01) => 6,
            (false, _) => 2,
        };
        let (cmd, tail) = rest.split_at(size);
        out.push(cmd);
        rest = tail;
    }
    out
}

#[test]
fn clock_sync_vectors_agree_with_chirpstacks_lrwn() {
    let mut checked = 0;
    for v in vectors() {
        let (Some(bytes), None, true) = (&v.bytes, &v.error, v.fport == 202) else {
            continue;
        };
        let ours: Vec<Value> = if v.uplink {
            let Ok(Uplink::ClockSync(cmds)) = decode_uplink(202, bytes) else {
                panic!("{}", v.name)
            };
            cmds.iter().map(up_as_lrwn_json).collect()
        } else {
            let Ok(Downlink::ClockSync(cmds)) = decode_downlink(202, bytes) else {
                panic!("{}", v.name)
            };
            cmds.iter().map(down_as_lrwn_json).collect()
        };
        let pieces = split_commands(v.uplink, bytes);
        assert_eq!(pieces.len(), ours.len(), "{}", v.name);
        for (piece, ours) in pieces.iter().zip(ours) {
            let theirs = lrwn_clock::Payload::from_slice(v.uplink, piece)
                .unwrap_or_else(|e| panic!("{}: lrwn refuses {}: {e}", v.name, hex::encode(piece)));
            assert_eq!(lrwn_as_json(&theirs), ours, "{}", v.name);
            assert_eq!(
                theirs.to_vec().expect("lrwn encodes"),
                piece.to_vec(),
                "{}: lrwn re-encodes differently",
                v.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} TS003 commands checked");
}

fn up_as_lrwn_json(c: &ClockSyncUp) -> Value {
    match *c {
        ClockSyncUp::PackageVersionAns {
            package_identifier,
            package_version,
        } => serde_json::json!(["PackageVersionAns", package_identifier, package_version]),
        ClockSyncUp::AppTimeReq {
            device_time,
            token_req,
            ans_required,
        } => serde_json::json!(["AppTimeReq", device_time, token_req, ans_required]),
        ClockSyncUp::DeviceAppTimePeriodicityAns {
            not_supported,
            device_time,
        } => serde_json::json!(["PeriodicityAns", not_supported, device_time]),
    }
}

fn down_as_lrwn_json(c: &ClockSyncDown) -> Value {
    match *c {
        ClockSyncDown::PackageVersionReq => serde_json::json!(["PackageVersionReq"]),
        ClockSyncDown::AppTimeAns {
            time_correction,
            token_ans,
        } => serde_json::json!(["AppTimeAns", time_correction, token_ans]),
        ClockSyncDown::DeviceAppTimePeriodicityReq { period } => {
            serde_json::json!(["PeriodicityReq", period])
        }
        ClockSyncDown::ForceDeviceResyncReq { nb_transmissions } => {
            serde_json::json!(["ForceDeviceResyncReq", nb_transmissions])
        }
    }
}

fn lrwn_as_json(p: &lrwn_clock::Payload) -> Value {
    use lrwn_clock::Payload as P;
    match p {
        P::PackageVersionReq => serde_json::json!(["PackageVersionReq"]),
        P::PackageVersionAns(pl) => serde_json::json!([
            "PackageVersionAns",
            pl.package_identifier,
            pl.package_version
        ]),
        P::AppTimeReq(pl) => serde_json::json!([
            "AppTimeReq",
            pl.device_time,
            pl.param.token_req,
            pl.param.ans_required
        ]),
        P::AppTimeAns(pl) => {
            serde_json::json!(["AppTimeAns", pl.time_correction, pl.param.token_ans])
        }
        P::DeviceAppTimePeropdicityReq(pl) => serde_json::json!(["PeriodicityReq", pl.period]),
        P::DeviceAppTimePeropdicityAns(pl) => {
            serde_json::json!(["PeriodicityAns", pl.status.not_supported, pl.time])
        }
        P::ForceDeviceResyncReq(pl) => {
            serde_json::json!(["ForceDeviceResyncReq", pl.force_conf.nb_transmissions])
        }
    }
}
