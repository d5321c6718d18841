//! Property-based fuzzing of the API from its own OpenAPI document: requests built from the
//! document's path, query and body schemas (mixed with values the fixture holds, so that
//! requests reach real meters, alarms and messages). Every answer must be a documented status
//! with a body that validates (the request helper holds every answer to the document) and
//! never a 5xx.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Map, Value, json};
use test_support::Dialect;

use crate::contract::{document, violations};
use crate::support::*;

fn resolve(schema: &Value) -> &Value {
    match schema["$ref"].as_str() {
        Some(r) => resolve(
            &document()["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        ),
        None => schema,
    }
}

/// Free text, any character (NUL included: the API refuses it with a 400 naming the field).
fn text(min: usize, max: usize) -> BoxedStrategy<String> {
    let max = max.min(min + 40);
    let pattern = format!("(?s:.){{{min},{max}}}");
    proptest::string::string_regex(&pattern)
        .expect("a pattern")
        .boxed()
}

fn string(schema: &Value) -> BoxedStrategy<Value> {
    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let max = schema["maxLength"].as_u64().unwrap_or(12) as usize;
    let s: BoxedStrategy<String> = match (schema["format"].as_str(), schema["pattern"].as_str()) {
        (Some("uuid"), _) => any::<u128>()
            .prop_map(|n| uuid::Uuid::from_u128(n).to_string())
            .boxed(),
        (Some("date-time"), _) => prop_oneof![
            // Around now, and anywhere in the years RFC 3339 can write.
            (-400_000_000i64..400_000_000).prop_map(|s| chrono::Utc::now().timestamp() + s),
            -62_135_596_800i64..253_402_300_799,
        ]
        .prop_map(|s| {
            chrono::DateTime::from_timestamp(s, 0)
                .unwrap_or_default()
                .to_rfc3339()
        })
        .boxed(),
        (Some("date"), _) => (1i32..=9999, 1u32..=12, 1u32..=28)
            .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
            .boxed(),
        // Anchored patterns generate directly; others (such as "not blank") filter below.
        (_, Some(p)) if p.starts_with('^') && p.ends_with('$') => {
            proptest::string::string_regex(&p[1..p.len() - 1])
                .expect("a pattern the generator reads")
                .boxed()
        }
        _ => text(min, max),
    };
    let unanchored = schema["pattern"]
        .as_str()
        .is_some_and(|p| !p.starts_with('^'));
    let schema = schema.clone();
    s.prop_map(Value::String)
        .prop_filter("fits its pattern", move |v| {
            !unanchored || violations(&schema, v).is_none()
        })
        .boxed()
}

fn integer(schema: &Value) -> BoxedStrategy<Value> {
    let min = schema["minimum"].as_i64().unwrap_or(i64::MIN);
    let max = schema["maximum"].as_i64().unwrap_or(i64::MAX);
    let small = (min.max(-5)..=max.min(50)).boxed();
    prop_oneof![3 => small, 1 => min..=max]
        .prop_map(|n| json!(n))
        .boxed()
}

/// An object: the required properties, any of the others; `branch` (a `oneOf` alternative)
/// may fix a property (`const`), forbid one (`false`) or require more.
fn object(schema: &Value, branch: Option<&Value>) -> BoxedStrategy<Value> {
    let mut required: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            branch
                .and_then(|b| b["required"].as_array())
                .into_iter()
                .flatten(),
        )
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    required.dedup();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
        let fixed = branch.map(|b| &b["properties"][name]);
        let strategy = match fixed {
            Some(Value::Bool(false)) => continue,
            Some(f) if f.get("const").is_some() => Just(f["const"].clone()).boxed(),
            _ => value(prop),
        };
        let name = name.clone();
        if required.contains(&name) {
            fields.push(strategy.prop_map(move |v| Some((name.clone(), v))).boxed());
        } else {
            fields.push(
                proptest::option::of(strategy)
                    .prop_map(move |v| v.map(|v| (name.clone(), v)))
                    .boxed(),
            );
        }
    }
    fields
        .prop_map(|pairs| Value::Object(pairs.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// JSON values that fit `schema` (the keywords the document's request schemas use).
fn value(schema: &Value) -> BoxedStrategy<Value> {
    let schema = resolve(schema);
    if let Some(c) = schema.get("const") {
        return Just(c.clone()).boxed();
    }
    if let Some(values) = schema["enum"].as_array() {
        return proptest::sample::select(values.clone()).boxed();
    }
    if let Some(branches) = schema["oneOf"].as_array() {
        let options: Vec<BoxedStrategy<Value>> =
            branches.iter().map(|b| object(schema, Some(b))).collect();
        return proptest::strategy::Union::new(options).boxed();
    }
    match schema["type"].as_str() {
        Some("string") => string(schema),
        Some("integer") => integer(schema),
        Some("boolean") => any::<bool>().prop_map(Value::Bool).boxed(),
        Some("number") => (-1e6f64..1e6).prop_map(|n| json!(n)).boxed(),
        Some("array") => {
            let min = schema["minItems"].as_u64().unwrap_or(0) as usize;
            proptest::collection::vec(value(&schema["items"]), min..min + 4)
                .prop_map(Value::Array)
                .boxed()
        }
        Some("object") => object(schema, None),
        _ => text(0, 12).prop_map(Value::String).boxed(),
    }
}

/// Percent-encodes a path segment or a query value (everything but unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    method: String,
    target: String,
    body: Option<Value>,
}

/// Requests for one operation; `known` offers the fixture's values for path parameters.
fn requests(
    method: &str,
    path: &str,
    op: &Value,
    known: &[(&str, Vec<Value>)],
) -> BoxedStrategy<Case> {
    let mut path_parts: Vec<BoxedStrategy<(String, String)>> = Vec::new();
    let mut query_parts: Vec<BoxedStrategy<Option<String>>> = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("").to_owned();
        let generated = value(&p["schema"]);
        if p["in"] == "path" {
            let known: Vec<Value> = known
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let s = if known.is_empty() {
                generated
            } else {
                prop_oneof![generated, proptest::sample::select(known)].boxed()
            };
            path_parts.push(s.prop_map(move |v| (name.clone(), plain(&v))).boxed());
        } else {
            query_parts.push(
                proptest::option::of(generated)
                    .prop_map(move |v| v.map(|v| format!("{name}={}", encode(&plain(&v)))))
                    .boxed(),
            );
        }
    }
    let body = match op.get("requestBody") {
        Some(b) => value(&b["content"]["application/json"]["schema"])
            .prop_map(Some)
            .boxed(),
        None => Just(None).boxed(),
    };
    let method = method.to_ascii_uppercase();
    let path = path.to_owned();
    (path_parts, query_parts, body)
        .prop_map(move |(params, query, body)| {
            let mut target = format!("/api/v1{path}");
            for (name, v) in params {
                target = target.replace(&format!("{{{name}}}"), &encode(&v));
            }
            let query: Vec<String> = query.into_iter().flatten().collect();
            if !query.is_empty() {
                target = format!("{target}?{}", query.join("&"));
            }
            Case {
                method: method.clone(),
                target,
                body,
            }
        })
        .boxed()
}

async fn fuzz(dialect: Dialect) {
    let Some(f) = fixture(dialect).await else {
        return;
    };
    let api = &f.api;
    let known: Vec<(&str, Vec<Value>)> = vec![
        (
            "meter",
            vec![json!(dev_eui(1)), json!(serial(2).to_string())],
        ),
        ("region", vec![json!("north"), json!("south")]),
        ("alarm", f.alarms.iter().map(|a| json!(a)).collect()),
        ("id", vec![json!(f.quarantined)]),
    ];
    let mut operations = Vec::new();
    for (path, methods) in document()["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            // Revoking keys at random could lock the fuzzer out; it is left to its tests.
            if op["operationId"] == "RevokeKey" {
                continue;
            }
            operations.push(requests(method, path, op, &known));
        }
    }
    let strategy = proptest::strategy::Union::new(operations);
    let cases = std::env::var("METERHUB_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let handle = tokio::runtime::Handle::current();
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |case| {
            let body = case
                .body
                .as_ref()
                .map(|b| serde_json::to_vec(b).expect("json"));
            // The request helper checks the answer against the document.
            let r = handle.block_on(request(
                api.addr,
                &case.method,
                &case.target,
                Some(&api.admin),
                body.as_deref(),
                &[],
            ));
            *statuses.borrow_mut().entry(r.status).or_default() += 1;
            if r.status >= 500 {
                return Err(TestCaseError::fail(format!(
                    "{} {} {}: {} {}",
                    case.method,
                    case.target,
                    case.body.map(|b| b.to_string()).unwrap_or_default(),
                    r.status,
                    r.text()
                )));
            }
            // A body the document allows is refused only for what its schema cannot say.
            if let Some(b) = &case.body
                && let Some(op) = crate::contract::operation(&case.method, &case.target)
                && let Some(why) = violations(
                    &op["requestBody"]["content"]["application/json"]["schema"],
                    b,
                )
            {
                return Err(TestCaseError::fail(format!(
                    "the generator made a body the document refuses: {b}: {why}"
                )));
            }
            Ok(())
        })
    });
    println!("{dialect:?}: statuses {:?}", statuses.borrow());
    if let Err(e) = result {
        panic!("{e}");
    }
    f.api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_the_document_get_documented_answers_sqlite() {
    fuzz(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_the_document_get_documented_answers_postgres() {
    fuzz(Dialect::Postgres).await;
}
