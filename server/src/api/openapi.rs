//! The OpenAPI 3.1 document, generated from the route table: paths, methods, roles and
//! statuses from [`ROUTES`]; parameters, bodies and answers from the Rust types that parse
//! requests ([`super::requests`]) and serialise answers ([`super::views`]), with their
//! examples and the links between operations.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::error::Problem;
use super::routes::{Example, Op, ROUTES, Route};
use super::views::{AlarmView, CommandView, KeyView, MeterView, QuarantinedView, ScheduleView};

/// A generator whose `$ref`s point into `components/schemas`: one for what requests carry
/// (as deserialised), one for answers (as serialised).
fn generator(settings: SchemaSettings) -> SchemaGenerator {
    settings
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator()
}

/// A request field's schema without its `null` alternative: a query string cannot say `null`,
/// and in a body an optional field is left out (a `null` is taken as absent, and would not
/// satisfy a kind that requires the field).
fn without_null(mut schema: Value) -> Value {
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        schema["type"] = match kept.as_slice() {
            [one] => one.clone(),
            _ => Value::Array(kept),
        };
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let kept: Vec<Value> = any
            .iter()
            .filter(|s| s.get("type") != Some(&json!("null")))
            .cloned()
            .collect();
        if let [one] = kept.as_slice()
            && let (Some(base), Some(one)) = (schema.as_object_mut(), one.as_object())
        {
            base.remove("anyOf");
            for (k, v) in one {
                base.insert(k.clone(), v.clone());
            }
        }
    }
    schema
}

/// An example for a path parameter, consistent with the answers' examples.
fn path_example(name: &str) -> Value {
    match name {
        "meter" => json!(MeterView::example().dev_eui),
        "region" => json!(MeterView::example().region),
        "customer" => json!(MeterView::example().user_id),
        "alarm" => json!(AlarmView::example().id),
        "schedule" => json!(ScheduleView::example().id),
        "id" => json!(QuarantinedView::example().id),
        "command" => json!(CommandView::example().id),
        "key" => json!(KeyView::example().id),
        "supplyPoint" => json!(crate::api::views::ReplacedView::example().supply_point_id),
        _ => Value::Null,
    }
}

/// The name of an operation in the document.
pub fn operation_id(op: Op) -> String {
    format!("{op:?}")
}

/// The path parameters of a route, in order.
pub fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn operation(r: &Route, requests: &mut SchemaGenerator, answers: &mut SchemaGenerator) -> Value {
    let mut params: Vec<Value> = Vec::new();
    for name in path_params(r.path) {
        let schema = super::requests::path_param(name, requests);
        params.push(json!({
            "name": name, "in": "path", "required": true,
            "description": schema.get("description").cloned().unwrap_or(json!("Id.")),
            "schema": schema, "example": path_example(name)
        }));
    }
    let query = (r.query.inline)(requests).to_value();
    let example = (r.query.example)();
    let required = query.get("required").cloned().unwrap_or(json!([]));
    if let Some(props) = query.get("properties").and_then(Value::as_object) {
        for (name, schema) in props {
            let mut param = json!({
                "name": name, "in": "query",
                "required": required.as_array().is_some_and(|r| r.contains(&json!(name))),
                "description": schema.get("description").cloned().unwrap_or(json!("")),
                "schema": without_null(schema.clone())
            });
            if let Some(v) = example.get(name).filter(|v| !v.is_null()) {
                param["example"] = v.clone();
            }
            params.push(param);
        }
    }
    let mut responses = Map::new();
    let mut ok = match r.answer {
        None => json!({"description": "Done."}),
        Some(a) => json!({
            "description": "Success.",
            "content": {"application/json": {
                "schema": (a.schema)(answers), "example": (a.example)()
            }}
        }),
    };
    if !r.links.is_empty() {
        let links: Map<String, Value> = r
            .links
            .iter()
            .map(|l| {
                (
                    l.name.to_owned(),
                    json!({
                        "operationId": operation_id(l.op),
                        "parameters": {l.parameter: format!("$response.body#{}", l.pointer)}
                    }),
                )
            })
            .collect();
        ok["links"] = Value::Object(links);
    }
    if r.op == Op::ExportConsumption {
        // The same rows as CSV, streamed: a header line of the JSON fields' names (their unit
        // suffixes name the units), then one line per meter and period.
        ok["content"]["text/csv"] = json!({
            "schema": {"type": "string"},
            "example": format!("{}\n", crate::billing::export::COLUMNS.join(","))
        });
    }
    if r.op == Op::InstallMeter {
        let mut updated = ok.clone();
        updated["description"] = json!("An existing meter, updated or unchanged.");
        responses.insert("200".into(), updated);
    }
    responses.insert(r.ok.to_string(), ok);
    // Every route parses a query string, if only to refuse parameters it does not take.
    {
        responses.insert("400".into(), problem("Bad input; `field` names it."));
    }
    if r.role.is_some() {
        responses.insert("401".into(), problem("No valid API key."));
        responses.insert("403".into(), problem("The key's role may not do this."));
    }
    // A schedule may name a meter in its body, the alarm list in its query.
    if r.path.contains('{')
        || matches!(
            r.op,
            Op::CreateSchedule | Op::ListAlarms | Op::ExportConsumption
        )
    {
        responses.insert("404".into(), problem("No such resource."));
    }
    if matches!(r.method, "POST" | "PATCH") || matches!(r.op, Op::RevokeKey | Op::DeleteReadings) {
        responses.insert("409".into(), problem("Conflicts with the current state."));
    }
    // The body is read (and its size checked) before the route is known.
    responses.insert("413".into(), problem("The body is too large."));
    if r.body.is_some() {
        responses.insert(
            "415".into(),
            problem("The body is not sent as `Content-Type: application/json`."),
        );
    }
    if r.op != Op::OpenApi {
        let mut unavailable = problem("The database is unavailable; retry later.");
        unavailable["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1}
        }});
        responses.insert("503".into(), unavailable);
    }
    let mut op = Map::new();
    op.insert("summary".into(), json!(r.summary));
    op.insert("operationId".into(), json!(operation_id(r.op)));
    if let Some(role) = r.role {
        op.insert(
            "description".into(),
            json!(format!("Needs the `{}` role or above.", role.as_str())),
        );
        op.insert("security".into(), json!([{"bearer": []}]));
    } else {
        op.insert("security".into(), json!([]));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(body) = r.body {
        op.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": {"application/json": {
                    "schema": (body.schema)(requests), "example": (body.example)()
                }}
            }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The names of a route's query parameters.
pub fn query_names(r: &Route) -> Vec<String> {
    let mut g = generator(SchemaSettings::draft2020_12().for_deserialize());
    let query = (r.query.inline)(&mut g).to_value();
    query["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The document.
pub fn document() -> Value {
    let mut requests = generator(SchemaSettings::draft2020_12().for_deserialize());
    let mut answers = generator(SchemaSettings::draft2020_12().for_serialize());
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(
                r.method.to_ascii_lowercase(),
                operation(r, &mut requests, &mut answers),
            );
        }
    }
    let mut schemas = answers.take_definitions(true);
    schemas.insert(
        "Problem".into(),
        Problem::json_schema(&mut answers).to_value(),
    );
    schemas.extend(answers.take_definitions(true));
    // A type both read and written would have two schemas under one name.
    for (name, mut schema) in requests.take_definitions(true) {
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for p in props.values_mut() {
                *p = without_null(p.take());
            }
        }
        debug_assert!(
            schemas.get(&name).is_none_or(|s| *s == schema),
            "{name} differs as read and as written"
        );
        schemas.insert(name, schema);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "meterhub REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Smart-meter data and operations. Errors are application/problem+json naming the field at fault; lists are paged by `cursor`; responses may be served from a cache that every write invalidates (`Cache-Control: no-cache` bypasses it)."
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key from `meterhub keys create` or POST /keys."}},
            "schemas": schemas
        }
    })
}
