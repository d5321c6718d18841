//! The route table: the single list from which requests are dispatched, roles are checked and
//! the OpenAPI document is generated, so the three cannot disagree.

use super::auth::Role;

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// GET /regions
    ListRegions,
    /// GET /regions/{region}/readings/latest
    LatestReadings,
    /// GET /connectivity
    SilentMeters,
    /// GET /meters
    ListMeters,
    /// POST /meters
    InstallMeter,
    /// GET /meters/{meter}
    GetMeter,
    /// GET /meters/{meter}/readings
    MeterReadings,
    /// GET /meters/{meter}/commands
    MeterCommands,
    /// GET /meters/{meter}/consumption
    MeterConsumption,
    /// POST /meters/{meter}/commands
    SendCommand,
    /// POST /regions/{region}/commands
    SendRegionCommand,
    /// GET /commands/{command}
    GetCommand,
    /// GET /self-test-schedules
    ListSchedules,
    /// POST /self-test-schedules
    CreateSchedule,
    /// GET /self-test-schedules/{schedule}
    GetSchedule,
    /// PUT /self-test-schedules/{schedule}
    UpdateSchedule,
    /// DELETE /self-test-schedules/{schedule}
    DeleteSchedule,
    /// GET /meters/{meter}/self-tests
    MeterSelfTests,
    /// GET /meters/{meter}/inspections
    MeterInspections,
    /// POST /meters/{meter}/inspections
    RecordInspection,
    /// GET /alarms
    ListAlarms,
    /// GET /alarms/{alarm}
    GetAlarm,
    /// POST /alarms/{alarm}/acknowledge
    AcknowledgeAlarm,
    /// POST /alarms/{alarm}/clear
    ClearAlarm,
    /// GET /quarantine
    ListQuarantine,
    /// POST /quarantine/{id}/replay
    ReplayQuarantined,
    /// GET /keys
    ListKeys,
    /// POST /keys
    CreateKey,
    /// DELETE /keys/{key}
    RevokeKey,
    /// GET /openapi.json
    OpenApi,
}

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// OpenAPI type: `string` or `integer`.
    pub kind: &'static str,
    /// OpenAPI format, e.g. `date-time`.
    pub format: Option<&'static str>,
    /// Allowed values, when a closed set.
    pub values: &'static [&'static str],
    /// What it does.
    pub doc: &'static str,
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// What it does.
    pub op: Op,
    /// HTTP method.
    pub method: &'static str,
    /// Path under `/api/v1`, with `{name}` for path parameters.
    pub path: &'static str,
    /// The least role that may call it; `None`: anyone.
    pub role: Option<Role>,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// Query parameters.
    pub query: &'static [Param],
    /// Schema of the JSON body, if it takes one.
    pub body: Option<&'static str>,
    /// Success status.
    pub ok: u16,
    /// Schema of the success answer.
    pub answer: &'static str,
    /// Whether answers are served from the response cache.
    pub cached: bool,
}

const fn p(name: &'static str, kind: &'static str, doc: &'static str) -> Param {
    Param {
        name,
        kind,
        format: None,
        values: &[],
        doc,
    }
}

const LIMIT: Param = p("limit", "integer", "Rows per page, 1–1000 (default 100).");
const CURSOR: Param = p("cursor", "string", "The `nextCursor` of the previous page.");
const FROM: Param = Param {
    format: Some("date-time"),
    ..p(
        "from",
        "string",
        "Start of the time range (inclusive), RFC 3339.",
    )
};
const TO: Param = Param {
    format: Some("date-time"),
    ..p(
        "to",
        "string",
        "End of the time range (exclusive), RFC 3339; default now.",
    )
};
const REGION: Param = p("region", "string", "Only this region.");

/// Meter statuses a list may filter by.
pub const METER_STATUSES: [&str; 5] = ["installed", "active", "silent", "disconnected", "removed"];
/// Alarm states a list may filter by.
pub const ALARM_STATES: [&str; 3] = ["open", "acknowledged", "cleared"];

/// Every route.
pub const ROUTES: &[Route] = &[
    Route {
        op: Op::ListRegions,
        method: "GET",
        path: "/regions",
        role: Some(Role::Viewer),
        summary: "Regions with their meters, silent meters and open alarms",
        query: &[],
        body: None,
        ok: 200,
        answer: "RegionList",
        cached: true,
    },
    Route {
        op: Op::LatestReadings,
        method: "GET",
        path: "/regions/{region}/readings/latest",
        role: Some(Role::Viewer),
        summary: "The latest reading of each meter of a region, in meter id order",
        query: &[LIMIT, CURSOR],
        body: None,
        ok: 200,
        answer: "LatestReadingPage",
        cached: true,
    },
    Route {
        op: Op::SilentMeters,
        method: "GET",
        path: "/connectivity",
        role: Some(Role::Viewer),
        summary: "Meters not heard within their reporting interval times the tolerance, longest silent first",
        query: &[REGION, LIMIT, CURSOR],
        body: None,
        ok: 200,
        answer: "MeterPage",
        cached: true,
    },
    Route {
        op: Op::ListMeters,
        method: "GET",
        path: "/meters",
        role: Some(Role::Viewer),
        summary: "Meters, in id order, by region, status or customer",
        query: &[
            REGION,
            Param {
                values: &METER_STATUSES,
                ..p("status", "string", "Only meters in this registry status.")
            },
            p("userId", "string", "Only this customer's meters."),
            LIMIT,
            CURSOR,
        ],
        body: None,
        ok: 200,
        answer: "MeterPage",
        cached: true,
    },
    Route {
        op: Op::InstallMeter,
        method: "POST",
        path: "/meters",
        role: Some(Role::Admin),
        summary: "Install (register) a meter, validated as `meterhub meters import` does; 201 when new, 200 when updated or unchanged",
        query: &[],
        body: Some("MeterInstall"),
        ok: 201,
        answer: "Meter",
        cached: false,
    },
    Route {
        op: Op::GetMeter,
        method: "GET",
        path: "/meters/{meter}",
        role: Some(Role::Viewer),
        summary: "A meter by DevEUI or serial: last seen, battery, link quality, clock drift",
        query: &[],
        body: None,
        ok: 200,
        answer: "Meter",
        cached: true,
    },
    Route {
        op: Op::MeterReadings,
        method: "GET",
        path: "/meters/{meter}/readings",
        role: Some(Role::Viewer),
        summary: "A meter's readings over a time range (default the 31 days before `to`), oldest first",
        query: &[FROM, TO, LIMIT, CURSOR],
        body: None,
        ok: 200,
        answer: "ReadingPage",
        cached: true,
    },
    Route {
        op: Op::MeterConsumption,
        method: "GET",
        path: "/meters/{meter}/consumption",
        role: Some(Role::Viewer),
        summary: "A meter's consumption per day, ISO week or month in the billing time zone, oldest first: register differences across the period's boundaries, measured or interpolated, with their quality",
        query: &[
            Param {
                values: &["day", "week", "month"],
                ..p("period", "string", "Period length (default `month`).")
            },
            Param {
                format: Some("date"),
                ..p(
                    "from",
                    "string",
                    "First local date; the list starts with the period holding it (default: 31 days, 12 weeks or 12 months before `to`).",
                )
            },
            Param {
                format: Some("date"),
                ..p(
                    "to",
                    "string",
                    "Periods starting before this local date are listed (default: tomorrow).",
                )
            },
            LIMIT,
            CURSOR,
        ],
        body: None,
        ok: 200,
        answer: "ConsumptionPage",
        cached: true,
    },
    Route {
        op: Op::MeterCommands,
        method: "GET",
        path: "/meters/{meter}/commands",
        role: Some(Role::Viewer),
        summary: "A meter's downlink commands and their states, newest first",
        query: &[LIMIT, CURSOR],
        body: None,
        ok: 200,
        answer: "CommandPage",
        cached: true,
    },
    Route {
        op: Op::SendCommand,
        method: "POST",
        path: "/meters/{meter}/commands",
        role: Some(Role::Operator),
        summary: "Queue a command (valve, self-test, read now, info, reporting interval, disconnect, clock resync, clock-sync periodicity, package version); it goes out after the meter's next uplink. 202 with the command, whose state follows it to the meter",
        query: &[],
        body: Some("CommandRequest"),
        ok: 202,
        answer: "Command",
        cached: false,
    },
    Route {
        op: Op::SendRegionCommand,
        method: "POST",
        path: "/regions/{region}/commands",
        role: Some(Role::Operator),
        summary: "Queue a self-test or a clock request (resync, periodicity, package version) for every reporting meter of a region",
        query: &[],
        body: Some("CommandRequest"),
        ok: 202,
        answer: "RegionCommands",
        cached: false,
    },
    Route {
        op: Op::GetCommand,
        method: "GET",
        path: "/commands/{command}",
        role: Some(Role::Viewer),
        summary: "One command: its state, and what completed it (a read now's reading)",
        query: &[],
        body: None,
        ok: 200,
        answer: "CommandDetail",
        cached: true,
    },
    Route {
        op: Op::ListSchedules,
        method: "GET",
        path: "/self-test-schedules",
        role: Some(Role::Viewer),
        summary: "Self-test schedules, in id order",
        query: &[LIMIT, CURSOR],
        body: None,
        ok: 200,
        answer: "SchedulePage",
        cached: false,
    },
    Route {
        op: Op::CreateSchedule,
        method: "POST",
        path: "/self-test-schedules",
        role: Some(Role::Operator),
        summary: "Create a self-test schedule for the fleet, a region or a meter",
        query: &[],
        body: Some("ScheduleSpec"),
        ok: 201,
        answer: "Schedule",
        cached: false,
    },
    Route {
        op: Op::GetSchedule,
        method: "GET",
        path: "/self-test-schedules/{schedule}",
        role: Some(Role::Viewer),
        summary: "One self-test schedule",
        query: &[],
        body: None,
        ok: 200,
        answer: "Schedule",
        cached: false,
    },
    Route {
        op: Op::UpdateSchedule,
        method: "PUT",
        path: "/self-test-schedules/{schedule}",
        role: Some(Role::Operator),
        summary: "Change a self-test schedule",
        query: &[],
        body: Some("ScheduleSpec"),
        ok: 200,
        answer: "Schedule",
        cached: false,
    },
    Route {
        op: Op::DeleteSchedule,
        method: "DELETE",
        path: "/self-test-schedules/{schedule}",
        role: Some(Role::Operator),
        summary: "Delete a self-test schedule (the commands it created stay)",
        query: &[],
        body: None,
        ok: 204,
        answer: "",
        cached: false,
    },
    Route {
        op: Op::MeterSelfTests,
        method: "GET",
        path: "/meters/{meter}/self-tests",
        role: Some(Role::Viewer),
        summary: "A meter's self-test results over a time range (default the 365 days before `to`), newest first",
        query: &[FROM, TO, LIMIT, CURSOR],
        body: None,
        ok: 200,
        answer: "SelfTestPage",
        cached: true,
    },
    Route {
        op: Op::MeterInspections,
        method: "GET",
        path: "/meters/{meter}/inspections",
        role: Some(Role::Viewer),
        summary: "A meter's field visits, newest first",
        query: &[LIMIT, CURSOR],
        body: None,
        ok: 200,
        answer: "InspectionPage",
        cached: true,
    },
    Route {
        op: Op::RecordInspection,
        method: "POST",
        path: "/meters/{meter}/inspections",
        role: Some(Role::Operator),
        summary: "Record a field visit",
        query: &[],
        body: Some("InspectionRecord"),
        ok: 201,
        answer: "Inspection",
        cached: false,
    },
    Route {
        op: Op::ListAlarms,
        method: "GET",
        path: "/alarms",
        role: Some(Role::Viewer),
        summary: "Alarms, newest first, by state, kind, region, meter and time raised",
        query: &[
            Param {
                values: &ALARM_STATES,
                ..p("state", "string", "Only alarms in this state.")
            },
            p("kind", "string", "Only alarms of this kind."),
            REGION,
            p(
                "meter",
                "string",
                "Only this meter's alarms (DevEUI or serial).",
            ),
            FROM,
            TO,
            LIMIT,
            CURSOR,
        ],
        body: None,
        ok: 200,
        answer: "AlarmPage",
        cached: true,
    },
    Route {
        op: Op::GetAlarm,
        method: "GET",
        path: "/alarms/{alarm}",
        role: Some(Role::Viewer),
        summary: "One alarm",
        query: &[],
        body: None,
        ok: 200,
        answer: "Alarm",
        cached: false,
    },
    Route {
        op: Op::AcknowledgeAlarm,
        method: "POST",
        path: "/alarms/{alarm}/acknowledge",
        role: Some(Role::Operator),
        summary: "Acknowledge an open alarm (recorded with the key's name); 409 when it is not open",
        query: &[],
        body: None,
        ok: 200,
        answer: "Alarm",
        cached: false,
    },
    Route {
        op: Op::ClearAlarm,
        method: "POST",
        path: "/alarms/{alarm}/clear",
        role: Some(Role::Operator),
        summary: "Clear an alarm; 409 when it is already cleared",
        query: &[],
        body: None,
        ok: 200,
        answer: "Alarm",
        cached: false,
    },
    Route {
        op: Op::ListQuarantine,
        method: "GET",
        path: "/quarantine",
        role: Some(Role::Viewer),
        summary: "Quarantined messages with their reasons, newest first",
        query: &[
            Param {
                values: &[
                    "malformed_json",
                    "protobuf",
                    "unknown_event",
                    "undecodable",
                    "unknown_fport",
                    "unregistered_device",
                    "bad_serial",
                    "out_of_range",
                    "refused",
                    "conflicting_reading",
                ],
                ..p(
                    "reason",
                    "string",
                    "Only messages quarantined for this reason.",
                )
            },
            LIMIT,
            CURSOR,
        ],
        body: None,
        ok: 200,
        answer: "QuarantinePage",
        cached: true,
    },
    Route {
        op: Op::ReplayQuarantined,
        method: "POST",
        path: "/quarantine/{id}/replay",
        role: Some(Role::Operator),
        summary: "Run a quarantined message through ingest again once its cause is fixed; 409 with the reason when it would still be quarantined",
        query: &[],
        body: None,
        ok: 200,
        answer: "Replay",
        cached: false,
    },
    Route {
        op: Op::ListKeys,
        method: "GET",
        path: "/keys",
        role: Some(Role::Admin),
        summary: "API keys (never their secrets)",
        query: &[],
        body: None,
        ok: 200,
        answer: "KeyList",
        cached: false,
    },
    Route {
        op: Op::CreateKey,
        method: "POST",
        path: "/keys",
        role: Some(Role::Admin),
        summary: "Create an API key; the answer holds its secret, shown this once",
        query: &[],
        body: Some("KeyCreate"),
        ok: 201,
        answer: "Key",
        cached: false,
    },
    Route {
        op: Op::RevokeKey,
        method: "DELETE",
        path: "/keys/{key}",
        role: Some(Role::Admin),
        summary: "Revoke an API key",
        query: &[],
        body: None,
        ok: 204,
        answer: "",
        cached: false,
    },
    Route {
        op: Op::OpenApi,
        method: "GET",
        path: "/openapi.json",
        role: None,
        summary: "This document",
        query: &[],
        body: None,
        ok: 200,
        answer: "",
        cached: false,
    },
];

/// How a request path matched the table.
#[derive(Debug)]
pub enum Match {
    /// A route, with its path parameters in order.
    Found(&'static Route, Vec<String>),
    /// The path exists, but not for this method; the methods it has.
    WrongMethod(Vec<&'static str>),
    /// No such path.
    NotFound,
}

/// Finds the route for a method and the path segments under `/api/v1`.
pub fn find(method: &str, segments: &[&str]) -> Match {
    let mut methods = Vec::new();
    for route in ROUTES {
        let pattern: Vec<&str> = route.path.trim_start_matches('/').split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let fits = pattern.iter().zip(segments).all(|(p, s)| {
            if p.starts_with('{') {
                params.push((*s).to_owned());
                !s.is_empty()
            } else {
                p == s
            }
        });
        if !fits {
            continue;
        }
        if route.method == method {
            return Match::Found(route, params);
        }
        methods.push(route.method);
    }
    if methods.is_empty() {
        Match::NotFound
    } else {
        Match::WrongMethod(methods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarantine_filter_offers_every_reason() {
        let route = ROUTES
            .iter()
            .find(|r| r.path == "/quarantine")
            .expect("route");
        let reason = route
            .query
            .iter()
            .find(|p| p.name == "reason")
            .expect("param");
        let names: Vec<&str> = crate::uplink::Reason::ALL
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert_eq!(reason.values, names.as_slice());
    }
}
