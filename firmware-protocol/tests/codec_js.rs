//! The ChirpStack codec `codec/meterhub.js`, run the way ChirpStack v4 runs a device profile's
//! "Custom JavaScript codec functions", against every golden vector in `vectors/`.
//!
//! ChirpStack wraps the script into an ES module (`import { Buffer } from "buffer";` in front,
//! `export default decodeUplink(chirpstack_input);` or `encodeDownlink` after it) and evaluates it
//! in a fresh QuickJS runtime per call, with the input in the global `chirpstack_input`. The
//! default export is then converted to JSON. These tests do the same with rquickjs, the binding
//! ChirpStack uses, so that a codec that only works under Node (a `require`, a `Buffer` import,
//! sloppy-mode code, a `Uint8Array` result) fails here.
//!
//! The same vectors also run under Node in `codec/meterhub.test.mjs`, started from here when
//! `node` is installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use firmware_protocol::{Error, decode_uplink};
use rquickjs::{CatchResultExt, Context, Ctx, Module, Object, Runtime, Type, Value};
use serde_json::{Map, Value as Json, json};

const CODEC: &str = include_str!("../codec/meterhub.js");

/// A stand-in for the `buffer` module ChirpStack provides (a vendored copy of the npm `buffer`
/// package). The codec must not use `Buffer` at all, so a class that fails on any use is enough:
/// the module only has to exist for the `import` ChirpStack puts in front of the script.
const BUFFER_STAND_IN: &str = r#"
function unavailable() {
  throw new Error("the codec must not use Buffer");
}
export class Buffer {
  constructor() { unavailable(); }
  static from() { unavailable(); }
  static alloc() { unavailable(); }
}
"#;

/// ChirpStack stops a codec after `codec.js.max_execution_time` (100 ms). The tests allow more,
/// as test machines can be slow and busy; the limit is there so that a codec that never returns
/// fails the test instead of hanging it.
const EXECUTION_LIMIT: Duration = Duration::from_secs(1);

/// The codec's three entry points; ChirpStack calls the first two, `decodeDownlink` is for tools.
#[derive(Clone, Copy, Debug)]
enum Entry {
    DecodeUplink,
    DecodeDownlink,
    EncodeDownlink,
}

impl Entry {
    fn function(self) -> &'static str {
        match self {
            Entry::DecodeUplink => "decodeUplink",
            Entry::DecodeDownlink => "decodeDownlink",
            Entry::EncodeDownlink => "encodeDownlink",
        }
    }
}

/// The input ChirpStack gives the codec.
enum Input<'a> {
    /// `{bytes, fPort, recvTime, variables}` for the decoders.
    Frame { bytes: &'a [u8], f_port: u8 },
    /// `{data, variables}` for `encodeDownlink` (ChirpStack passes no fPort).
    Data(&'a Json),
}

/// Runs one codec call in a fresh runtime and returns its default export as JSON, or the text of
/// what went wrong (a thrown exception, a value ChirpStack could not publish).
fn run_codec(entry: Entry, input: &Input) -> Result<Json, String> {
    let runtime = Runtime::new().map_err(|e| e.to_string())?;
    let started = Instant::now();
    runtime.set_interrupt_handler(Some(Box::new(move || started.elapsed() > EXECUTION_LIMIT)));
    let context = Context::full(&runtime).map_err(|e| e.to_string())?;
    context.with(|ctx| {
        set_input(&ctx, input).map_err(|e| format!("building the input: {e}"))?;
        // ChirpStack registers `buffer` with rquickjs's built-in resolver and loader, which need
        // rquickjs's `loader` feature. Declaring the module under the imported name has the same
        // effect without it: QuickJS looks among the modules it already has before it asks a
        // loader, so `import { Buffer } from "buffer"` resolves to this one.
        Module::declare(ctx.clone(), "buffer", BUFFER_STAND_IN)
            .catch(&ctx)
            .map_err(|e| format!("declaring the buffer module: {e}"))?;
        let source = format!(
            "import {{ Buffer }} from \"buffer\";\n{CODEC}\nexport default {}(chirpstack_input);\n",
            entry.function()
        );
        let (module, evaluated) = Module::declare(ctx.clone(), "main", source)
            .and_then(Module::eval)
            .catch(&ctx)
            .map_err(|e| format!("JS error: {e}"))?;
        evaluated
            .finish::<()>()
            .catch(&ctx)
            .map_err(|e| format!("JS error: {e}"))?;
        let result: Value = module
            .get("default")
            .catch(&ctx)
            .map_err(|e| format!("reading the default export: {e}"))?;
        to_json(&result, "result")
    })
}

fn set_input(ctx: &Ctx, input: &Input) -> rquickjs::Result<()> {
    let object = Object::new(ctx.clone())?;
    match input {
        Input::Frame { bytes, f_port } => {
            // A Vec becomes a plain Array of numbers, as ChirpStack's `bytes` is.
            object.set("bytes", bytes.to_vec())?;
            object.set("fPort", i32::from(*f_port))?;
            // A SystemTime becomes a JS Date, as ChirpStack's `recvTime` is.
            object.set("recvTime", SystemTime::now())?;
        }
        Input::Data(data) => {
            object.set("data", ctx.json_parse(data.to_string())?)?;
        }
    }
    object.set("variables", Object::new(ctx.clone())?)?;
    ctx.globals().set("chirpstack_input", object)
}

/// Converts the codec's result to JSON, rejecting what ChirpStack would mangle or drop instead
/// of passing it on: `undefined` (published as null), non-finite numbers (an `Infinity` makes
/// ChirpStack drop the whole uplink event), functions and symbols, and objects other than plain
/// objects and arrays (a `Date` is published as `{}`, a `Uint8Array` fails an encode). Arrays
/// are recognised as QuickJS's `JS_IsArray` does, which is `Array.isArray`.
///
/// QuickJS hands numbers over as 32-bit integers or doubles; doubles with an integral value are
/// turned into JSON integers so that they compare equal to the vectors' integers.
fn to_json(value: &Value, path: &str) -> Result<Json, String> {
    match value.type_of() {
        Type::Null => Ok(Json::Null),
        Type::Bool => Ok(Json::Bool(value.as_bool().unwrap_or_default())),
        Type::Int => Ok(json!(value.as_int().unwrap_or_default())),
        Type::Float => {
            let float = value.as_float().unwrap_or(f64::NAN);
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            if !float.is_finite() {
                Err(format!("{path} is {float}, not a finite number"))
            } else if float.fract() == 0.0 && float.abs() <= EXACT {
                // Integral and exact: the cast loses nothing.
                Ok(json!(float as i64))
            } else {
                Ok(json!(float))
            }
        }
        Type::String => value
            .as_string()
            .ok_or_else(|| format!("{path} is not a string"))?
            .to_string()
            .map(Json::String)
            .map_err(|e| format!("{path}: {e}")),
        Type::Array => {
            let array = value
                .as_array()
                .ok_or_else(|| format!("{path} is not an array"))?;
            (0..array.len())
                .map(|i| {
                    let item: Value = array.get(i).map_err(|e| format!("{path}[{i}]: {e}"))?;
                    to_json(&item, &format!("{path}[{i}]"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array)
        }
        Type::Object => {
            let object = value
                .as_object()
                .ok_or_else(|| format!("{path} is not an object"))?;
            let object_prototype: Object = value
                .ctx()
                .globals()
                .get::<_, Object>("Object")
                .and_then(|o| o.get("prototype"))
                .map_err(|e| e.to_string())?;
            match object.get_prototype() {
                None => {}
                Some(prototype) if prototype == object_prototype => {}
                Some(_) => return Err(format!("{path} is not a plain object")),
            }
            let mut map = Map::new();
            for key in object.keys::<String>() {
                let key = key.map_err(|e| format!("{path}: {e}"))?;
                let item: Value = object.get(&key).map_err(|e| format!("{path}.{key}: {e}"))?;
                map.insert(key.clone(), to_json(&item, &format!("{path}.{key}"))?);
            }
            Ok(Json::Object(map))
        }
        other => Err(format!("{path} is {other}, not a JSON value")),
    }
}

/// One golden vector, with the file it comes from.
struct Vector {
    file: String,
    name: String,
    f_port: u8,
    downlink: bool,
    bytes: Option<Vec<u8>>,
    json: Option<Json>,
    error: Option<String>,
    encode_error: Option<String>,
}

impl Vector {
    fn label(&self) -> String {
        format!("{}: {}", self.file, self.name)
    }

    fn frame(&self) -> Input<'_> {
        Input::Frame {
            bytes: self.bytes.as_deref().unwrap_or_default(),
            f_port: self.f_port,
        }
    }
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Every vector of every `vectors/*.json` file, in file-name order. Panics on a vector it cannot
/// read, and when there are none, so that no test passes by checking nothing.
fn load_vectors() -> Vec<Vector> {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vector files in {}", dir.display());

    let mut vectors = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let parsed: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let items = parsed["vectors"]
            .as_array()
            .unwrap_or_else(|| panic!("{file} has no \"vectors\" array"));
        assert!(!items.is_empty(), "{file} has no vectors");
        for item in items {
            vectors.push(parse_vector(&file, item));
        }
    }
    vectors
}

fn parse_vector(file: &str, item: &Json) -> Vector {
    let name = item["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{file}: a vector without a name: {item}"))
        .to_owned();
    let label = format!("{file}: {name}");
    let f_port = item["fPort"]
        .as_u64()
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or_else(|| panic!("{label}: fPort is not 0-255"));
    let downlink = match item["direction"].as_str() {
        Some("uplink") => false,
        Some("downlink") => true,
        other => panic!("{label}: unknown direction {other:?}"),
    };
    let bytes = item.get("hex").map(|hex| {
        let hex = hex
            .as_str()
            .unwrap_or_else(|| panic!("{label}: hex is not a string"));
        hex::decode(hex).unwrap_or_else(|e| panic!("{label}: bad hex: {e}"))
    });
    let text = |key: &str| {
        item.get(key).map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{label}: {key} is not a string"))
                .to_owned()
        })
    };
    let vector = Vector {
        file: file.to_owned(),
        name,
        f_port,
        downlink,
        bytes,
        json: item.get("json").cloned(),
        error: text("error"),
        encode_error: text("encodeError"),
    };
    // Exactly one of the three shapes, so that no vector is silently left unchecked.
    let shape = (
        vector.bytes.is_some(),
        vector.json.is_some(),
        vector.error.is_some(),
        vector.encode_error.is_some(),
    );
    assert!(
        matches!(
            shape,
            (true, true, false, false) | (true, false, true, false) | (false, true, false, true)
        ),
        "{label}: not one of the vector shapes (hex+json, hex+error, json+encodeError)"
    );
    assert!(
        vector.encode_error.is_none() || vector.downlink,
        "{label}: the codec only encodes downlinks"
    );
    vector
}

/// Whether a check was about a vector.
enum Checked {
    Yes,
    NotApplicable,
}

/// Runs `check` on every vector and fails once, listing every vector that did not pass; also
/// fails when the check applied to no vector at all, so that it cannot pass by checking nothing.
fn check_all(vectors: &[Vector], check: impl Fn(&Vector) -> Result<Checked, String>) {
    let mut checked = 0;
    let mut failures = Vec::new();
    for v in vectors {
        match check(v) {
            Ok(Checked::NotApplicable) => continue,
            Ok(Checked::Yes) => {}
            Err(e) => failures.push(format!("{}: {e}", v.label())),
        }
        checked += 1;
    }
    assert!(checked > 0, "no vector is of the kind this test checks");
    assert!(
        failures.is_empty(),
        "{} of {checked} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn expect_eq(what: &str, actual: &Json, expected: &Json) -> Result<Checked, String> {
    if actual == expected {
        Ok(Checked::Yes)
    } else {
        Err(format!(
            "{what}:\n  got      {actual}\n  expected {expected}"
        ))
    }
}

fn decode_entry(vector: &Vector) -> Entry {
    if vector.downlink {
        Entry::DecodeDownlink
    } else {
        Entry::DecodeUplink
    }
}

#[test]
fn every_vector_decodes_to_its_json_in_quickjs() {
    check_all(&load_vectors(), |v| {
        let (Some(_), Some(json)) = (&v.bytes, &v.json) else {
            return Ok(Checked::NotApplicable);
        };
        let result = run_codec(decode_entry(v), &v.frame())?;
        expect_eq("decoding", &result, &json!({ "data": json }))
    });
}

#[test]
fn every_downlink_vector_encodes_to_its_bytes_in_quickjs() {
    check_all(&load_vectors(), |v| {
        let (true, Some(bytes), Some(json)) = (v.downlink, &v.bytes, &v.json) else {
            return Ok(Checked::NotApplicable);
        };
        let result = run_codec(Entry::EncodeDownlink, &Input::Data(json))?;
        expect_eq(
            "encoding",
            &result,
            &json!({ "bytes": bytes, "fPort": v.f_port }),
        )
    });
}

#[test]
fn every_error_vector_is_rejected_with_its_text_in_quickjs() {
    check_all(&load_vectors(), |v| {
        let (Some(bytes), Some(error)) = (&v.bytes, &v.error) else {
            return Ok(Checked::NotApplicable);
        };
        // ChirpStack calls decodeUplink for every uplink, also empty ones and those on ports the
        // codec has no decoder for (fPort 0 included), and logs a codec failure for each error:
        // for those the codec returns empty data instead.
        let not_decoded = bytes.is_empty() || *error == format!("unknown fPort {}", v.f_port);
        let expected = if !v.downlink && not_decoded {
            json!({ "data": {} })
        } else {
            json!({ "data": {}, "errors": [error] })
        };
        let result = run_codec(decode_entry(v), &v.frame())?;
        expect_eq("decoding", &result, &expected)
    });
}

#[test]
fn every_encode_error_vector_is_rejected_with_its_text_in_quickjs() {
    check_all(&load_vectors(), |v| {
        let (Some(json), Some(error)) = (&v.json, &v.encode_error) else {
            return Ok(Checked::NotApplicable);
        };
        let result = run_codec(Entry::EncodeDownlink, &Input::Data(json))?;
        expect_eq("encoding", &result, &json!({ "errors": [error] }))
    });
}

#[test]
fn encoded_downlinks_are_plain_arrays_of_byte_values() {
    // `to_json` only yields a JSON array for a value QuickJS considers an array (`Array.isArray`)
    // and fails on a Uint8Array or Buffer, which ChirpStack cannot convert either.
    check_all(&load_vectors(), |v| {
        let (true, Some(_), Some(json)) = (v.downlink, &v.bytes, &v.json) else {
            return Ok(Checked::NotApplicable);
        };
        let result = run_codec(Entry::EncodeDownlink, &Input::Data(json))?;
        let bytes = result["bytes"]
            .as_array()
            .ok_or_else(|| format!("bytes is not an Array: {result}"))?;
        match bytes.iter().find(|b| b.as_u64().is_none_or(|b| b > 255)) {
            Some(bad) => Err(format!("bytes holds {bad}, not an integer 0-255")),
            None => Ok(Checked::Yes),
        }
    });
}

#[test]
fn uplinks_the_codec_has_no_decoder_for_decode_to_empty_data() {
    let mut cases: Vec<(u8, &[u8])> = vec![(0, &[0x02, 0x03]), (0, &[0x01; 21])];
    for f_port in [0, 1, 2, 3, 4, 10, 99, 202, 255] {
        cases.push((f_port, &[]));
    }
    for f_port in [5, 10, 99, 201, 203, 224, 255] {
        cases.push((f_port, &[0x01, 0x04]));
    }
    for (f_port, bytes) in cases {
        let result = run_codec(Entry::DecodeUplink, &Input::Frame { bytes, f_port });
        assert_eq!(
            result,
            Ok(json!({ "data": {} })),
            "fPort {f_port}, bytes {bytes:02x?}"
        );
    }
}

/// How the codec reports an exception it did not raise itself.
const INTERNAL_ERROR: &str = "internal codec error:";

/// SplitMix64: a small deterministic generator, so that a failure can be reproduced.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn arbitrary_uplinks_decode_as_in_rust() {
    const CASES: usize = 3000;
    const MESSAGE_PORTS: [u8; 6] = [1, 2, 3, 4, 10, 202];
    // Valid uplink frames to mutate: random bytes rarely get past the first checks, mutated
    // frames reach every field check and the decoders' success paths.
    let seeds: Vec<(u8, Vec<u8>)> = load_vectors()
        .into_iter()
        .filter(|v| !v.downlink && v.json.is_some())
        .filter_map(|v| Some((v.f_port, v.bytes?)))
        .collect();
    assert!(!seeds.is_empty(), "no uplink vectors to mutate");

    let mut rng = SplitMix64(0x6d65_7465_7268_7562);
    let mut failures = Vec::new();
    let mut decoded = 0;
    for case in 0..CASES {
        let (f_port, bytes) = match case % 3 {
            // Every port 0-255 in turn, random bytes of 0-60.
            0 => (
                u8::try_from((case / 3) % 256).unwrap(),
                random_frame(&mut rng),
            ),
            // The protocol's ports, random bytes of 0-60.
            1 => (
                MESSAGE_PORTS[pick(&mut rng, MESSAGE_PORTS.len())],
                random_frame(&mut rng),
            ),
            // A valid frame with a few random changes.
            _ => {
                let (f_port, seed) = &seeds[pick(&mut rng, seeds.len())];
                (*f_port, mutate(&mut rng, seed))
            }
        };
        let outcome = run_codec(
            Entry::DecodeUplink,
            &Input::Frame {
                bytes: &bytes,
                f_port,
            },
        )
        .and_then(|result| {
            check_decode_result(&result)?;
            expect_eq("decoding", &result, &rust_decode_result(f_port, &bytes))?;
            Ok(result["data"]
                .as_object()
                .is_some_and(|data| !data.is_empty()))
        });
        match outcome {
            Ok(true) => decoded += 1,
            Ok(false) => {}
            Err(e) => failures.push(format!(
                "fPort {f_port}, bytes {}: {e}",
                hex::encode(&bytes)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CASES} frames failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(decoded > 0, "no arbitrary frame decoded");
    println!("{decoded} of {CASES} arbitrary frames decoded, the others were rejected");
}

/// What `decodeUplink` must return for a frame, from the Rust decoder: its message as `data`,
/// or its error as the only entry of `errors`; empty data where the codec has no decoder
/// (empty frames, fPort 0 and the ports of no uplink message).
fn rust_decode_result(f_port: u8, bytes: &[u8]) -> Json {
    match decode_uplink(f_port, bytes) {
        Ok(uplink) => json!({ "data": uplink }),
        Err(Error::Empty | Error::UnknownPort(_)) => json!({ "data": {} }),
        Err(e) => json!({ "data": {}, "errors": [e.to_string()] }),
    }
}

fn pick(rng: &mut SplitMix64, len: usize) -> usize {
    usize::try_from(rng.below(len as u64)).unwrap()
}

/// 0-60 random bytes, mostly starting with the version byte so that the decoders get past the
/// version check.
fn random_frame(rng: &mut SplitMix64) -> Vec<u8> {
    let len = pick(rng, 61);
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.next().to_le_bytes()[0]).collect();
    if !bytes.is_empty() && rng.below(4) != 0 {
        bytes[0] = 1;
    }
    bytes
}

/// One to three random changes: a flipped bit, a replaced byte, a cut, an added byte.
fn mutate(rng: &mut SplitMix64, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..=rng.below(3) {
        let random_byte = rng.next().to_le_bytes()[0];
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let i = pick(rng, bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let i = pick(rng, bytes.len());
                bytes[i] = random_byte;
            }
            2 => bytes.truncate(pick(rng, bytes.len() + 1)),
            _ => bytes.push(random_byte),
        }
    }
    bytes
}

/// A decode result ChirpStack accepts: `data` a plain object, and `errors`, when present, a
/// non-empty array of strings next to empty data, none of them the codec's report of an
/// exception it caught (which is a bug in the codec, whatever the frame). Non-finite numbers
/// were already rejected by `to_json`.
fn check_decode_result(result: &Json) -> Result<(), String> {
    let object = result
        .as_object()
        .ok_or_else(|| format!("not an object: {result}"))?;
    let data = object
        .get("data")
        .and_then(Json::as_object)
        .ok_or_else(|| format!("no data object: {result}"))?;
    if let Some(unexpected) = object.keys().find(|k| *k != "data" && *k != "errors") {
        return Err(format!("unexpected key {unexpected}: {result}"));
    }
    match object.get("errors") {
        None => Ok(()),
        Some(Json::Array(errors))
            if errors
                .iter()
                .filter_map(Json::as_str)
                .any(|e| e.starts_with(INTERNAL_ERROR)) =>
        {
            Err(format!("the codec threw: {result}"))
        }
        Some(Json::Array(errors))
            if !errors.is_empty() && errors.iter().all(Json::is_string) && data.is_empty() =>
        {
            Ok(())
        }
        Some(_) => Err(format!(
            "errors is not a non-empty array of strings: {result}"
        )),
    }
}

#[test]
fn the_node_test_suite_passes_when_node_is_installed() {
    let test_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("codec/meterhub.test.mjs");
    let output = match Command::new("node").arg("--test").arg(&test_file).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Node is optional, even in CI: the QuickJS tests above cover what ChirpStack runs.
            println!("skipped: node not found");
            return;
        }
        Err(e) => panic!("running node: {e}"),
    };
    assert!(
        output.status.success(),
        "node --test {} failed ({}):\n{}\n{}",
        test_file.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
