//! The OpenAPI 3 document, generated from the route table (paths, methods, parameters, roles,
//! statuses) and the schemas below.

use serde_json::{Map, Value, json};

use super::routes::{ROUTES, Route};

fn page(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "nextCursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
            "nextCursor": {"type": ["string", "null"], "description": "Pass as `cursor` for the next page; null on the last page."}
        }
    })
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn nullable_time() -> Value {
    json!({"type": ["string", "null"], "format": "date-time"})
}

fn schemas() -> Value {
    json!({
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "field": {"type": "string", "description": "The parameter or body field at fault."}
            }
        },
        "Region": {
            "type": "object",
            "properties": {
                "id": {"type": "string"}, "name": {"type": "string"},
                "meters": {"type": "integer"}, "silentMeters": {"type": "integer"},
                "openAlarms": {"type": "integer"}
            }
        },
        "RegionList": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Region"}}}},
        "Meter": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "devEui": {"type": "string"}, "serial": {"type": "string"},
                "bodyNumber": {"type": "integer"}, "userId": {"type": "string"},
                "applicationId": {"type": "string"}, "region": {"type": "string"},
                "usageType": {"type": "string"}, "mode": {"type": "string"},
                "productionDate": {"type": "string", "format": "date"},
                "status": {"type": "string"}, "reportingIntervalMinutes": {"type": "integer"},
                "lastSeenAt": nullable_time(), "overdueAt": nullable_time(),
                "silent": {"type": "boolean"},
                "batteryMillivolts": {"type": ["integer", "null"]},
                "batteryPercent": {"type": ["integer", "null"]},
                "rssi": {"type": ["integer", "null"]}, "snr": {"type": ["number", "null"]},
                "clockDriftMs": {"type": ["integer", "null"]},
                "firmwareVersion": {"type": ["string", "null"]},
                "infoReceivedAt": nullable_time(), "createdAt": time(), "updatedAt": time()
            }
        },
        "MeterPage": page("Meter"),
        "MeterInstall": {
            "type": "object",
            "description": "The fields of `meterhub meters import`.",
            "required": ["serial", "devEui", "applicationId", "bodyNumber", "userId", "region", "usageType", "mode", "productionDate"],
            "properties": {
                "serial": {"type": "string", "description": "14 digits with check digit"},
                "devEui": {"type": "string", "description": "16 hex digits"},
                "applicationId": {"type": "string", "format": "uuid"},
                "bodyNumber": {"type": ["integer", "string"]},
                "userId": {"type": "string"}, "region": {"type": "string"},
                "usageType": {"enum": ["residential", "commercial", "industrial", "public"]},
                "mode": {"enum": ["credit", "prepaid"]},
                "productionDate": {"type": "string", "format": "date"},
                "reportingIntervalMinutes": {"type": ["integer", "string"], "description": "15–10080, default 1440"}
            }
        },
        "Reading": {
            "type": "object",
            "properties": {
                "readingTime": time(), "receivedAt": time(),
                "gasVolumeLitres": {"type": ["integer", "null"]}, "energyWh": {"type": ["integer", "null"]},
                "voltageDecivolts": {"type": ["integer", "null"]}, "currentMilliamps": {"type": ["integer", "null"]},
                "gasTemperatureCentiCelsius": {"type": ["integer", "null"]}, "gasPressurePa": {"type": ["integer", "null"]},
                "valve": {"enum": ["notFitted", "open", "closed", "fault", "unknown"]},
                "door": {"enum": ["notFitted", "closed", "open", "unknown"]},
                "batteryMillivolts": {"type": "integer"}, "batteryPercent": {"type": "integer"},
                "flags": {"type": "array", "items": {"type": "string"}}, "fCnt": {"type": ["integer", "null"]}
            }
        },
        "ReadingPage": page("Reading"),
        "LatestReading": {
            "type": "object",
            "properties": {"devEui": {"type": "string"}, "reading": {"$ref": "#/components/schemas/Reading"}}
        },
        "LatestReadingPage": page("LatestReading"),
        "Alarm": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "meterId": {"type": "integer"}, "kind": {"type": "string"},
                "source": {"enum": ["meter", "server"]}, "raisedAt": time(), "value": {"type": ["integer", "null"]},
                "state": {"enum": ["open", "acknowledged", "cleared"]}, "receivedAt": time(),
                "acknowledgedAt": nullable_time(), "acknowledgedBy": {"type": ["string", "null"]},
                "clearedAt": nullable_time()
            }
        },
        "AlarmPage": page("Alarm"),
        "Command": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"}, "kind": {"type": "string"},
                "fport": {"type": "integer"}, "payload": {"type": "string", "description": "hex"},
                "confirmed": {"type": "boolean"}, "requestedBy": {"type": "string"},
                "state": {"type": "string"}, "attempts": {"type": "integer"},
                "error": {"type": ["string", "null"]}, "createdAt": time(), "updatedAt": time(),
                "expiresAt": time()
            }
        },
        "CommandPage": page("Command"),
        "CommandRequest": {
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": {"enum": ["valveOpen", "valveClose", "selfTest", "readNow", "sendInfo",
                    "setReportingInterval", "disconnect", "forceResync", "clockPeriodicity",
                    "packageVersion"]},
                "tests": {"type": "array", "items": {"type": "string"}, "description": "selfTest: the tests by name"},
                "minutes": {"type": "integer", "minimum": 15, "maximum": 10080, "description": "setReportingInterval"},
                "transmissions": {"type": "integer", "minimum": 1, "maximum": 7, "description": "forceResync (default 1)"},
                "period": {"type": "integer", "minimum": 0, "maximum": 15, "description": "clockPeriodicity: every 128·2^period s"},
                "expiresInMinutes": {"type": "integer", "minimum": 1, "maximum": 43200}
            }
        },
        "CommandDetail": {
            "allOf": [{"$ref": "#/components/schemas/Command"}, {
                "type": "object",
                "properties": {
                    "meterId": {"type": "integer"}, "sentAt": nullable_time(),
                    "completedAt": nullable_time(), "deadlineAt": nullable_time(),
                    "result": {"type": ["object", "null"]}, "scheduleId": {"type": ["integer", "null"]},
                    "reading": {"oneOf": [{"$ref": "#/components/schemas/Reading"}, {"type": "null"}]}
                }
            }]
        },
        "RegionCommands": {
            "type": "object",
            "properties": {"region": {"type": "string"}, "kind": {"type": "string"}, "commands": {"type": "integer"}}
        },
        "ScheduleSpec": {
            "type": "object",
            "required": ["scope", "tests", "intervalMinutes"],
            "properties": {
                "scope": {"enum": ["fleet", "region", "meter"]},
                "region": {"type": "string"}, "meter": {"type": "string", "description": "DevEUI or serial"},
                "tests": {"type": "array", "items": {"type": "string"}},
                "intervalMinutes": {"type": "integer", "minimum": 15, "maximum": 527040},
                "nextRunAt": time(), "enabled": {"type": "boolean"}
            }
        },
        "Schedule": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "scope": {"enum": ["fleet", "region", "meter"]},
                "region": {"type": ["string", "null"]}, "meterId": {"type": ["integer", "null"]},
                "tests": {"type": "array", "items": {"type": "string"}},
                "intervalMinutes": {"type": "integer"}, "nextRunAt": time(), "enabled": {"type": "boolean"},
                "createdBy": {"type": "string"}, "createdAt": time(), "updatedAt": time()
            }
        },
        "SchedulePage": page("Schedule"),
        "SelfTest": {
            "type": "object",
            "properties": {
                "meterTime": time(), "receivedAt": time(),
                "testsRun": {"type": "array", "items": {"type": "string"}},
                "testsFailed": {"type": "array", "items": {"type": "string"}},
                "passed": {"type": "boolean"},
                "batteryLoadedMillivolts": {"type": "integer"}, "batteryRestMillivolts": {"type": "integer"},
                "valveTravelMs": {"type": "integer"}, "metrologyDeviationCentiPercent": {"type": "integer"},
                "internalTemperatureCentiCelsius": {"type": "integer"}
            }
        },
        "SelfTestPage": page("SelfTest"),
        "Inspection": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "meterId": {"type": "integer"}, "alarmId": {"type": ["integer", "null"]},
                "visitedAt": time(), "inspector": {"type": "string"},
                "outcome": {"enum": ["ok", "repaired", "replaced", "tampered", "no_access"]},
                "notes": {"type": "string"}, "createdAt": time()
            }
        },
        "InspectionPage": page("Inspection"),
        "InspectionRecord": {
            "type": "object",
            "required": ["visitedAt", "inspector", "outcome"],
            "properties": {
                "visitedAt": time(), "inspector": {"type": "string"},
                "outcome": {"enum": ["ok", "repaired", "replaced", "tampered", "no_access"]},
                "notes": {"type": "string"}, "alarmId": {"type": "integer"}
            }
        },
        "Quarantined": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "receivedAt": time(), "topic": {"type": "string"},
                "payload": {"type": ["string", "null"]}, "payloadBase64": {"type": ["string", "null"]},
                "reason": {"type": "string"}, "detail": {"type": "string"},
                "devEui": {"type": ["string", "null"]}, "replayedAt": nullable_time()
            }
        },
        "QuarantinePage": page("Quarantined"),
        "Replay": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "applied": {"type": "boolean"},
                "readings": {"type": "integer"}, "alarms": {"type": "integer"}, "replayedAt": time()
            }
        },
        "Key": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
                "role": {"enum": ["viewer", "operator", "admin"]}, "prefix": {"type": "string"},
                "createdAt": time(), "revokedAt": nullable_time(),
                "secret": {"type": "string", "description": "Only in the answer to the creation."}
            }
        },
        "KeyList": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}},
        "KeyCreate": {
            "type": "object",
            "required": ["name", "role"],
            "properties": {"name": {"type": "string"}, "role": {"enum": ["viewer", "operator", "admin"]}}
        }
    })
}

/// The billing schemas (kept apart: one `json!` of every schema exceeds the macro's recursion
/// limit).
fn with_billing(mut schemas: Value) -> Value {
    let billing = json!({
        "Consumption": {
            "type": "object",
            "description": "A period's consumption: the register at its end minus the register at its start. Figures are null unless the quality is measured or estimated.",
            "properties": {
                "period": {"enum": ["day", "week", "month"]},
                "periodStart": {"type": "string", "format": "date-time", "description": "local time with offset"},
                "periodEnd": {"type": "string", "format": "date-time", "description": "local time with offset (exclusive)"},
                "periodStartUtc": time(), "periodEndUtc": time(),
                "quality": {"enum": ["measured", "estimated", "incomplete", "invalid"]},
                "readings": {"type": "integer", "description": "readings dated within the period"},
                "gasLitres": {"type": ["integer", "null"]}, "gasCubicMetres": {"type": ["number", "null"]},
                "gasRegisterStart": {"type": ["integer", "null"]}, "gasRegisterEnd": {"type": ["integer", "null"]},
                "energyWh": {"type": ["integer", "null"]}, "energyKwh": {"type": ["number", "null"]},
                "energyRegisterStart": {"type": ["integer", "null"]}, "energyRegisterEnd": {"type": ["integer", "null"]}
            }
        },
        "ConsumptionPage": page("Consumption")
    });
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), billing) {
        all.extend(more);
    }
    schemas
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn operation(r: &Route) -> Value {
    let mut params: Vec<Value> = Vec::new();
    for seg in r.path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let doc = match name {
                "meter" => "DevEUI (16 hex digits) or serial (14 digits).",
                "region" => "Region id.",
                "key" => "Key id (UUID).",
                _ => "Id.",
            };
            params.push(json!({
                "name": name, "in": "path", "required": true,
                "description": doc, "schema": {"type": "string"}
            }));
        }
    }
    for q in r.query {
        let mut schema = Map::new();
        schema.insert("type".into(), json!(q.kind));
        if let Some(f) = q.format {
            schema.insert("format".into(), json!(f));
        }
        if !q.values.is_empty() {
            schema.insert("enum".into(), json!(q.values));
        }
        if q.name == "limit" {
            schema.insert("minimum".into(), json!(1));
            schema.insert("maximum".into(), json!(super::input::MAX_PAGE));
        }
        params.push(json!({
            "name": q.name, "in": "query", "required": false,
            "description": q.doc, "schema": schema
        }));
    }
    let mut responses = Map::new();
    let ok = if r.answer.is_empty() {
        json!({"description": "Done."})
    } else {
        json!({
            "description": "Success.",
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", r.answer)}}}
        })
    };
    responses.insert(r.ok.to_string(), ok);
    if r.op == super::routes::Op::InstallMeter {
        responses.insert(
            "200".into(),
            json!({
                "description": "An existing meter, updated or unchanged.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Meter"}}}
            }),
        );
    }
    if !r.query.is_empty() || r.body.is_some() || r.path.contains('{') {
        responses.insert("400".into(), problem("Bad input; `field` names it."));
    }
    if r.role.is_some() {
        responses.insert("401".into(), problem("No valid API key."));
        responses.insert("403".into(), problem("The key's role may not do this."));
    }
    if r.path.contains('{') {
        responses.insert("404".into(), problem("No such resource."));
    }
    if r.method == "POST" {
        responses.insert("409".into(), problem("Conflicts with the current state."));
    }
    if r.body.is_some() {
        responses.insert("413".into(), problem("The body is too large."));
    }
    let mut op = Map::new();
    op.insert("summary".into(), json!(r.summary));
    op.insert("operationId".into(), json!(format!("{:?}", r.op)));
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
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}
            }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(r.method.to_ascii_lowercase(), operation(r));
        }
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
            "schemas": with_billing(schemas())
        }
    })
}
