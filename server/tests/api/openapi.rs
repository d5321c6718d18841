//! The OpenAPI document against the routes the server really answers.

use std::collections::BTreeSet;

use meterhub::api::routes::ROUTES;
use serde_json::{Value, json};
use test_support::Dialect;

use crate::contract::{document, violations};
use crate::support::*;

/// Every operation of the document, with its method and path.
fn operations() -> Vec<(String, String, &'static Value)> {
    let mut out = Vec::new();
    for (path, methods) in document()["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            out.push((method.clone(), path.clone(), op));
        }
    }
    out
}

fn must_fit(what: &str, schema: &Value, value: &Value) {
    if let Some(why) = violations(schema, value) {
        panic!("{what}: {value} does not fit {schema}: {why}");
    }
}

#[test]
fn every_example_fits_its_schema_and_every_operation_has_them() {
    for (method, path, op) in operations() {
        let at = format!("{method} {path}");
        for p in op["parameters"].as_array().into_iter().flatten() {
            let what = format!("{at} parameter {}", p["name"]);
            if p["in"] == "path" {
                assert!(!p["example"].is_null(), "{what} has no example");
            }
            if !p["example"].is_null() {
                must_fit(&what, &p["schema"], &p["example"]);
            }
        }
        if let Some(body) = op.get("requestBody") {
            let media = &body["content"]["application/json"];
            assert!(!media["example"].is_null(), "{at}: no body example");
            must_fit(&format!("{at} body"), &media["schema"], &media["example"]);
        }
        let responses = op["responses"].as_object().expect("responses");
        for (status, r) in responses {
            for (media, m) in r["content"].as_object().into_iter().flatten() {
                let what = format!("{at} {status} {media}");
                if status.starts_with('2') {
                    assert!(!m["example"].is_null(), "{what}: no example");
                }
                if !m["example"].is_null() {
                    must_fit(&what, &m["schema"], &m["example"]);
                }
            }
        }
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{at}: no success"
        );
    }
}

/// Resolves a `$ref` into the document's components.
fn resolve(schema: &Value) -> &Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &document()["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[test]
fn the_document_is_as_strict_as_the_server() {
    let mut bodies = 0;
    for (method, path, op) in operations() {
        let at = format!("{method} {path}");
        if let Some(body) = op.get("requestBody") {
            bodies += 1;
            let schema = resolve(&body["content"]["application/json"]["schema"]);
            // The server refuses unknown fields by name.
            assert_eq!(schema["additionalProperties"], false, "{at}: {schema}");
            assert!(schema["required"].is_array(), "{at}: nothing required");
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or("");
            let schema = &p["schema"];
            let what = format!("{at} {name}: {schema}");
            match name {
                "alarm" | "schedule" | "id" => {
                    assert_eq!(schema["type"], "integer", "{what}");
                    assert_eq!(schema["minimum"], 1, "{what}");
                }
                "command" | "key" => assert_eq!(schema["format"], "uuid", "{what}"),
                "meter" => assert!(schema["pattern"].is_string(), "{what}"),
                "limit" => {
                    assert_eq!(schema["type"], "integer", "{what}");
                    assert_eq!(
                        (&schema["minimum"], &schema["maximum"]),
                        (&json!(1), &json!(1000)),
                        "{what}"
                    );
                }
                "cursor" => assert!(schema["pattern"].is_string(), "{what}"),
                "from" | "to" => assert!(
                    schema["format"] == "date-time" || schema["format"] == "date",
                    "{what}"
                ),
                _ => {}
            }
            // A query string has no null.
            assert!(!schema.to_string().contains("\"null\""), "{what}");
        }
    }
    assert!(bodies >= 6, "{bodies} bodies");
    let install = resolve(
        &document()["paths"]["/meters"]["post"]["requestBody"]["content"]["application/json"]["schema"],
    );
    let required: Vec<&str> = install["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in [
        "serial",
        "devEui",
        "applicationId",
        "bodyNumber",
        "userId",
        "region",
        "usageType",
        "mode",
        "productionDate",
    ] {
        assert!(
            required.contains(&field),
            "{field} not required: {required:?}"
        );
    }
    assert_eq!(install["properties"]["bodyNumber"]["type"], "integer");
}

/// The operation with this id.
fn by_id(id: &str) -> (String, String, &'static Value) {
    operations()
        .into_iter()
        .find(|(_, _, op)| op["operationId"] == id)
        .unwrap_or_else(|| panic!("no operation {id}"))
}

#[test]
fn links_lead_to_operations_that_take_the_value() {
    let mut links = 0;
    for (method, path, op) in operations() {
        for (status, r) in op["responses"].as_object().expect("responses") {
            for (name, link) in r["links"].as_object().into_iter().flatten() {
                links += 1;
                let at = format!("{method} {path} {status} link {name}");
                let (_, _, target) = by_id(link["operationId"].as_str().expect("operationId"));
                let example = &r["content"]["application/json"]["example"];
                for (param, expr) in link["parameters"].as_object().expect("parameters") {
                    let pointer = expr
                        .as_str()
                        .and_then(|e| e.strip_prefix("$response.body#"))
                        .unwrap_or_else(|| panic!("{at}: {expr}"));
                    let value = example
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("{at}: {pointer} is not in {example}"));
                    let p = target["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["name"] == *param && p["in"] == "path")
                        .unwrap_or_else(|| panic!("{at}: the target takes no {param}"));
                    must_fit(&at, &p["schema"], value);
                }
            }
        }
    }
    assert!(links >= 4, "{links} links");
    let install = &by_id("InstallMeter").2["responses"]["201"]["links"];
    assert_eq!(install["readings"]["operationId"], "MeterReadings");
    let send = &by_id("SendCommand").2["responses"]["202"]["links"];
    assert_eq!(send["state"]["operationId"], "GetCommand");
}

/// A path of the document with the parameters of the examples.
fn example_path(path: &str, op: &Value) -> String {
    let mut out = format!("/api/v1{path}");
    for p in op["parameters"].as_array().into_iter().flatten() {
        if p["in"] == "path" {
            let v = match &p["example"] {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            out = out.replace(&format!("{{{}}}", p["name"].as_str().unwrap_or("")), &v);
        }
    }
    out
}

/// The query string of an operation's parameter examples.
fn example_query(op: &Value) -> String {
    let pairs: Vec<String> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query" && !p["example"].is_null())
        .map(|p| {
            let v = p["example"]
                .as_str()
                .map_or_else(|| p["example"].to_string(), str::to_owned);
            format!("{}={v}", p["name"].as_str().unwrap_or(""))
        })
        .collect();
    pairs.join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_are_accepted_and_the_links_followed() {
    let Some(api) = TestApi::start(Dialect::Sqlite).await else {
        return;
    };
    let body = |id: &str| {
        let (_, _, op) = by_id(id);
        op["requestBody"]["content"]["application/json"]["example"].clone()
    };
    let send = |method: &'static str, path: String, b: Option<Value>| {
        let api = &api;
        async move {
            let bytes = b.map(|b| serde_json::to_vec(&b).expect("json"));
            request(
                api.addr,
                method,
                &path,
                Some(&api.admin),
                bytes.as_deref(),
                &[],
            )
            .await
        }
    };
    // The documented meter, then what its links lead to.
    let r = send("POST", "/api/v1/meters".into(), Some(body("InstallMeter"))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let meter = r.json();
    let (_, path, op) = by_id("MeterReadings");
    let url = path.replace("{meter}", meter["devEui"].as_str().expect("devEui"));
    let r = send("GET", format!("/api/v1{url}?{}", example_query(op)), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, path, _) = by_id("SendCommand");
    let url = format!(
        "/api/v1{}",
        path.replace("{meter}", meter["devEui"].as_str().expect("devEui"))
    );
    let r = send("POST", url, Some(body("SendCommand"))).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let command = r.json();
    let (_, path, _) = by_id("GetCommand");
    let url = format!(
        "/api/v1{}",
        path.replace("{command}", command["id"].as_str().expect("id"))
    );
    let r = send("GET", url, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], command["state"]);
    // A change and a retirement as documented, and where their links lead.
    let dev_eui = meter["devEui"].as_str().expect("devEui");
    let r = send(
        "PATCH",
        format!("/api/v1/meters/{dev_eui}"),
        Some(body("ChangeMeter")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, path, _) = by_id("MeterHistory");
    let r = send(
        "GET",
        format!("/api/v1{}", path.replace("{meter}", dev_eui)),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["items"][0]["action"], "change");
    let r = send(
        "POST",
        format!("/api/v1/meters/{dev_eui}/retire"),
        Some(body("RetireMeter")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, path, _) = by_id("MeterFinalReport");
    let url = path.replace("{meter}", r.json()["devEui"].as_str().expect("devEui"));
    let r = send("GET", format!("/api/v1{url}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Installed again for the examples below.
    let r = send("POST", "/api/v1/meters".into(), Some(body("InstallMeter"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The other bodies, as documented.
    let r = send(
        "POST",
        "/api/v1/regions/north/commands".into(),
        Some(body("SendRegionCommand")),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let r = send(
        "POST",
        "/api/v1/self-test-schedules".into(),
        Some(body("CreateSchedule")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let schedule = r.json()["id"].clone();
    let r = send(
        "PUT",
        format!("/api/v1/self-test-schedules/{schedule}"),
        Some(body("UpdateSchedule")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, path, op) = by_id("RecordInspection");
    let r = send(
        "POST",
        example_path(&path, op),
        Some(body("RecordInspection")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = send("POST", "/api/v1/keys".into(), Some(body("CreateKey"))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json()["id"].as_str().expect("id").to_owned();
    let r = send("DELETE", format!("/api/v1/keys/{key}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text());
    // Every list with the examples of its parameters.
    for (method, path, op) in operations() {
        if method != "get" || path.contains('{') {
            continue;
        }
        let r = send("GET", format!("/api/v1{path}?{}", example_query(op)), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    api.stop().await;
}

/// A path of the document with its parameters filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| match s {
            "{meter}" => dev_eui(1),
            "{region}" => "south".into(),
            "{key}" => uuid::Uuid::new_v4().to_string(),
            s if s.starts_with('{') => "1".into(),
            s => s.into(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn no_route(r: &Reply) -> bool {
    r.status == 405 || (r.status == 404 && r.text().contains("no route"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_exactly_the_routes_the_server_answers() {
    let Some(api) = TestApi::start(Dialect::Sqlite).await else {
        return;
    };
    let doc = request(api.addr, "GET", "/api/v1/openapi.json", None, None, &[])
        .await
        .json();
    let mut documented = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
            assert!(op["responses"].is_object(), "{method} {path}");
        }
    }
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, table);
    assert!(documented.len() >= 20, "{documented:?}");
    // Every documented operation is answered (by its handler: a resource may be missing,
    // the route may not)…
    for (method, path) in &documented {
        let url = format!("/api/v1{}", concrete(path));
        let r = request(api.addr, method, &url, Some(&api.admin), Some(b"{}"), &[]).await;
        assert!(
            !no_route(&r),
            "{method} {url} is documented but not served: {}",
            r.text()
        );
    }
    // …and nothing else is: other methods on documented paths, and undocumented paths.
    for path in documented.iter().map(|(_, p)| p).collect::<BTreeSet<_>>() {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if documented.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let url = format!("/api/v1{}", concrete(path));
            let r = request(api.addr, method, &url, Some(&api.admin), None, &[]).await;
            assert_eq!(r.status, 405, "{method} {url}");
            assert!(r.header("allow").is_some());
        }
    }
    for url in [
        "/api/v1/meter",
        "/api/v1/meters/x/y/z",
        "/api/v1/",
        "/api/v2/meters",
    ] {
        let r = request(api.addr, "GET", url, Some(&api.admin), None, &[]).await;
        assert_eq!(r.status, 404, "{url}");
    }
    api.stop().await;
}
