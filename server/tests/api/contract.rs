//! The OpenAPI document as a contract: every answer the API tests receive is checked against
//! it (a documented status, the documented media type, a body that validates), and the
//! document's own examples and links are checked here too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use meterhub::api::routes::{self, Match};
use serde_json::{Value, json};

/// The document, as the server generates it.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(meterhub::api::openapi::document)
}

fn validator(schema: &Value) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().expect("validators").get(&key) {
        return v.clone();
    }
    // The schema inside a root that holds the components its `$ref`s point to.
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document()["components"],
        "allOf": [schema]
    });
    let v = Arc::new(
        jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the document's schema {schema} does not compile: {e}")),
    );
    cache.lock().expect("validators").insert(key, v.clone());
    v
}

/// Why `value` does not fit `schema`, if it does not.
pub fn violations(schema: &Value, value: &Value) -> Option<String> {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// The documented operation a request reaches: its path template and method in the document.
pub fn operation(method: &str, target: &str) -> Option<&'static Value> {
    let path = target.split('?').next().unwrap_or(target);
    let tail = path.strip_prefix("/api/v1/")?;
    let segments: Vec<&str> = tail.trim_end_matches('/').split('/').collect();
    // A HEAD is answered as its GET, without a body.
    let method = if method == "HEAD" { "GET" } else { method };
    match routes::find(method, &segments) {
        Match::Found(route, _) => {
            Some(&document()["paths"][route.path][method.to_ascii_lowercase()])
        }
        _ => None,
    }
}

/// Checks an answer against the document; requests that reach no operation (other paths, a
/// wrong method) are not the document's business.
pub fn check(
    method: &str,
    target: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let Some(op) = operation(method, target) else {
        return Ok(());
    };
    let response = &op["responses"][status.to_string()];
    if response.is_null() {
        let documented: Vec<&String> = op["responses"]
            .as_object()
            .map(|r| r.keys().collect())
            .unwrap_or_default();
        return Err(format!(
            "status {status} is not documented (only {documented:?}): {}",
            String::from_utf8_lossy(body)
        ));
    }
    let Some(content) = response["content"].as_object() else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "status {status} is documented without a body, yet has one: {}",
                String::from_utf8_lossy(body)
            ))
        };
    };
    if method == "HEAD" {
        return Ok(());
    }
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let Some(schema) = content.get(media).map(|m| &m["schema"]) else {
        return Err(format!(
            "status {status} answered as {media:?}, documented as {:?}",
            content.keys().collect::<Vec<_>>()
        ));
    };
    if media == "text/csv" {
        // CSV is text whose header line is the documented one.
        let text = std::str::from_utf8(body)
            .map_err(|e| format!("status {status}: the CSV is not UTF-8 ({e})"))?;
        let documented = content[media]["example"]
            .as_str()
            .unwrap_or("")
            .lines()
            .next();
        if text.lines().next() != documented {
            return Err(format!(
                "status {status}: the CSV header {:?} is not the documented {documented:?}",
                text.lines().next()
            ));
        }
        return match violations(schema, &Value::String(text.to_owned())) {
            None => Ok(()),
            Some(why) => Err(format!("status {status}: {why}")),
        };
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "status {status}: the body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })?;
    match violations(schema, &value) {
        None => Ok(()),
        Some(why) => Err(format!("status {status}: {why}: {value}")),
    }
}
