//! The route table: the single list from which requests are dispatched, roles are checked and
//! the OpenAPI document is generated, so the three cannot disagree.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::Value;

use super::auth::Role;
use super::requests::{
    AlarmsQuery, CommandBody, ConsumptionQuery, DeleteAlarmsQuery, DeleteReadingsQuery, EraseBody,
    ExportQuery, InspectionBody, KeyBody, MeterInstall, MeterPatch, MetersQuery, NoQuery,
    PageQuery, QuarantineQuery, RangeQuery, RegionCommandBody, ReplaceBody, RetireBody,
    ScheduleBody, SilentQuery,
};
use super::views::{
    AlarmView, AuditView, CommandDetail, CommandView, DeletionView, Document, ErasureView,
    InspectionView, KeyView, LatestReadingView, List, MeterDetailsView, MeterView, Page,
    QuarantinedView, ReadingView, RegionCommands, RegionView, ReplacedView, ReplayView,
    ScheduleView, SelfTestView, SupplyPointConsumptionView,
};
use crate::billing::export::ExportRecord;
use crate::billing::{ConsumptionRecord, RegionTotals, RevisionRecord};
use crate::storage::lifecycle::FinalReport;

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
    /// PATCH /meters/{meter}
    ChangeMeter,
    /// GET /meters/{meter}/history
    MeterHistory,
    /// POST /meters/{meter}/retire
    RetireMeter,
    /// GET /meters/{meter}/final-report
    MeterFinalReport,
    /// POST /supply-points/{supplyPoint}/replace
    ReplaceMeter,
    /// GET /supply-points/{supplyPoint}/consumption
    SupplyPointConsumption,
    /// GET /meters/{meter}/readings
    MeterReadings,
    /// DELETE /meters/{meter}/readings
    DeleteReadings,
    /// DELETE /meters/{meter}/alarms
    DeleteAlarms,
    /// POST /customers/{customer}/erase
    EraseCustomer,
    /// GET /meters/{meter}/commands
    MeterCommands,
    /// GET /meters/{meter}/consumption
    MeterConsumption,
    /// GET /meters/{meter}/consumption/revisions
    ConsumptionRevisions,
    /// GET /regions/{region}/consumption
    RegionConsumption,
    /// GET /consumption
    ExportConsumption,
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

/// A type in the document: how to describe it and an example of it. Query types are
/// described inline (one parameter per field); bodies and answers by a `$ref` to their
/// component.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The schema: inline for an object type's own schema, a `$ref` for a named one.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// The type's own (inline) schema, for query types.
    pub inline: fn(&mut SchemaGenerator) -> Schema,
    /// An example value, as JSON.
    pub example: fn() -> Value,
}

impl Shape {
    /// The shape of `T`.
    pub const fn of<T: JsonSchema + Example>() -> Shape {
        Shape {
            schema: subschema::<T>,
            inline: T::json_schema,
            example: example_value::<T>,
        }
    }
}

fn subschema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn example_value<T: Example>() -> Value {
    serde_json::to_value(T::example()).unwrap_or(Value::Null)
}

/// A value to show in the document for a request or answer type.
pub trait Example: Serialize + Sized {
    /// A typical value, valid for the type's schema.
    fn example() -> Self;
}

/// An OpenAPI link: a value of a success answer is a path parameter of another operation.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// The link's name.
    pub name: &'static str,
    /// The operation it leads to.
    pub op: Op,
    /// That operation's path parameter.
    pub parameter: &'static str,
    /// Where the value is in the answer (a JSON pointer).
    pub pointer: &'static str,
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
    /// The query string's type: each field a parameter.
    pub query: Shape,
    /// The JSON body's type, if it takes one.
    pub body: Option<Shape>,
    /// Success status.
    pub ok: u16,
    /// The success answer's type; `None`: no body.
    pub answer: Option<Shape>,
    /// Operations that take a value of the success answer.
    pub links: &'static [Link],
    /// Whether answers are served from the response cache.
    pub cached: bool,
}

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
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<List<RegionView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::LatestReadings,
        method: "GET",
        path: "/regions/{region}/readings/latest",
        role: Some(Role::Viewer),
        summary: "The latest reading of each meter of a region, in meter id order",
        query: Shape::of::<PageQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<LatestReadingView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::SilentMeters,
        method: "GET",
        path: "/connectivity",
        role: Some(Role::Viewer),
        summary: "Meters not heard within their reporting interval times the tolerance, longest silent first",
        query: Shape::of::<SilentQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<MeterView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::ListMeters,
        method: "GET",
        path: "/meters",
        role: Some(Role::Viewer),
        summary: "Meters, in id order, by region, status or customer",
        query: Shape::of::<MetersQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<MeterView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::InstallMeter,
        method: "POST",
        path: "/meters",
        role: Some(Role::Admin),
        summary: "Install (register) a meter, validated as `meterhub meters import` does; 201 when new, 200 when updated or unchanged",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<MeterInstall>()),
        ok: 201,
        answer: Some(Shape::of::<MeterView>()),
        links: &[
            Link {
                name: "readings",
                op: Op::MeterReadings,
                parameter: "meter",
                pointer: "/devEui",
            },
            Link {
                name: "details",
                op: Op::GetMeter,
                parameter: "meter",
                pointer: "/devEui",
            },
            Link {
                name: "commands",
                op: Op::SendCommand,
                parameter: "meter",
                pointer: "/devEui",
            },
        ],
        cached: false,
    },
    Route {
        op: Op::GetMeter,
        method: "GET",
        path: "/meters/{meter}",
        role: Some(Role::Viewer),
        summary: "A meter by DevEUI or serial: last seen, battery, link quality, clock drift, latest device status",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<MeterDetailsView>()),
        links: &[Link {
            name: "readings",
            op: Op::MeterReadings,
            parameter: "meter",
            pointer: "/devEui",
        }],
        cached: true,
    },
    Route {
        op: Op::ChangeMeter,
        method: "PATCH",
        path: "/meters/{meter}",
        role: Some(Role::Operator),
        summary: "Change a meter's details (customer, region, usage type, mode, reporting interval, body number, application, production date, its supply point's address) as a JSON merge patch with a `reason`, validated as an install is; recorded in its history. 409 for a destroyed meter",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<MeterPatch>()),
        ok: 200,
        answer: Some(Shape::of::<MeterView>()),
        links: &[Link {
            name: "history",
            op: Op::MeterHistory,
            parameter: "meter",
            pointer: "/devEui",
        }],
        cached: false,
    },
    Route {
        op: Op::MeterHistory,
        method: "GET",
        path: "/meters/{meter}/history",
        role: Some(Role::Viewer),
        summary: "A meter's audit trail, newest first: every install, change, retirement and deletion, who did it, when, what changed (before and after) and why",
        query: Shape::of::<PageQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<AuditView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::RetireMeter,
        method: "POST",
        path: "/meters/{meter}/retire",
        role: Some(Role::Admin),
        summary: "Take a meter in service out of service for renovation (back to stock; a later install puts it at a supply point again) or destruction (final): its unfinished commands fail with the reason, its installation closes at its last register, its readings stay. Answers the final report; 409 when it is not in service",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<RetireBody>()),
        ok: 200,
        answer: Some(Shape::of::<FinalReport>()),
        links: &[Link {
            name: "report",
            op: Op::MeterFinalReport,
            parameter: "meter",
            pointer: "/devEui",
        }],
        cached: false,
    },
    Route {
        op: Op::MeterFinalReport,
        method: "GET",
        path: "/meters/{meter}/final-report",
        role: Some(Role::Viewer),
        summary: "The final report of a meter's latest retirement: last registers, open alarms, last inspection, the commands it still had, the installation it closed; 404 for a meter never retired",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<FinalReport>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::ReplaceMeter,
        method: "POST",
        path: "/supply-points/{supplyPoint}/replace",
        role: Some(Role::Operator),
        summary: "Replace the meter at a supply point (its id is a meter's `installation.supplyPointId`): the old meter's installation closes at its final register (given, or its last reading at or before `at`) and the old meter goes to stock (`removed`; its unfinished commands fail); the new meter (one in stock by `meter`, or a new one by `install`) takes the supply point's customer, region and usage type and opens an installation at its opening register at the same instant. Both meters' histories record it; the supply point's consumption continues across the two. 409 when the supply point has no meter, or the new meter is in service or destroyed",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<ReplaceBody>()),
        ok: 200,
        answer: Some(Shape::of::<ReplacedView>()),
        links: &[Link {
            name: "history",
            op: Op::MeterHistory,
            parameter: "meter",
            pointer: "/newMeter",
        }],
        cached: false,
    },
    Route {
        op: Op::SupplyPointConsumption,
        method: "GET",
        path: "/supply-points/{supplyPoint}/consumption",
        role: Some(Role::Viewer),
        summary: "A supply point's consumption per day, ISO week or month across the meters that served it: each installation's meter contributes its part of the period, from its opening register (or its readings) to its closing register (or its readings), so that a meter replaced mid-period bills the old meter's part up to the swap plus the new meter's from it; `meters` lists the parts. Before its first meter a period is `incomplete`. Paged like a meter's consumption; computed on every read (closed periods' published figures are per meter)",
        query: Shape::of::<ConsumptionQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<SupplyPointConsumptionView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::MeterReadings,
        method: "GET",
        path: "/meters/{meter}/readings",
        role: Some(Role::Viewer),
        summary: "A meter's readings over a time range (default the 31 days before `to`), oldest first",
        query: Shape::of::<RangeQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<ReadingView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::DeleteReadings,
        method: "DELETE",
        path: "/meters/{meter}/readings",
        role: Some(Role::Admin),
        summary: "Delete a meter's readings in [from, to), with a `reason` recorded in its history; `dryRun=true` answers what would go (count, closed billing periods touched) without deleting. A range touching a closed billing period is refused (409 naming the periods) unless `force=true`: each such period then gets a revision (`readingsDeleted`), its published figures unchanged",
        query: Shape::of::<DeleteReadingsQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<DeletionView>()),
        links: &[Link {
            name: "history",
            op: Op::MeterHistory,
            parameter: "meter",
            pointer: "/devEui",
        }],
        cached: false,
    },
    Route {
        op: Op::DeleteAlarms,
        method: "DELETE",
        path: "/meters/{meter}/alarms",
        role: Some(Role::Admin),
        summary: "Delete a meter's alarms raised in [from, to), with a `reason` recorded in its history (visits that named one keep their record without it); `dryRun=true` answers what would go without deleting",
        query: Shape::of::<DeleteAlarmsQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<DeletionView>()),
        links: &[Link {
            name: "history",
            op: Op::MeterHistory,
            parameter: "meter",
            pointer: "/devEui",
        }],
        cached: false,
    },
    Route {
        op: Op::EraseCustomer,
        method: "POST",
        path: "/customers/{customer}/erase",
        role: Some(Role::Admin),
        summary: "Erase a customer's personal data, with a `reason`: their id on meters and supply points, in the notes of their meters' visits, in history rows and final reports is replaced by one random anonymous token, so their readings and consumption stay together under it; each of their meters' history records the erasure. `dryRun: true` answers what names them without changing it; 404 when nothing does",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<EraseBody>()),
        ok: 200,
        answer: Some(Shape::of::<ErasureView>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::MeterConsumption,
        method: "GET",
        path: "/meters/{meter}/consumption",
        role: Some(Role::Viewer),
        summary: "A meter's consumption per day, ISO week or month in the billing time zone, oldest first: register differences across the period's boundaries, measured or interpolated, with their quality. A period closed (`[billing] grace_days` after its end) shows its published figures, which never change, with `closedAt` and its latest revision",
        query: Shape::of::<ConsumptionQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<ConsumptionRecord>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::ConsumptionRevisions,
        method: "GET",
        path: "/meters/{meter}/consumption/revisions",
        role: Some(Role::Viewer),
        summary: "A meter's revisions of closed periods, in the order they were made: readings stored after a period closed that changed its figures, with the figures before and after (the published figures stay as they were)",
        query: Shape::of::<PageQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<RevisionRecord>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::RegionConsumption,
        method: "GET",
        path: "/regions/{region}/consumption",
        role: Some(Role::Viewer),
        summary: "A region's consumption per day, ISO week or month in its billing time zone, oldest first: the sum of its measured and estimated meters' figures, and how many meters were measured, estimated, incomplete or invalid, in all and per usage type",
        query: Shape::of::<ConsumptionQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<RegionTotals>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::ExportConsumption,
        method: "GET",
        path: "/consumption",
        role: Some(Role::Viewer),
        summary: "A billing run: every meter's (or a region's) consumption over one month's periods, in meter order. JSON pages of meters; with `Accept: text/csv`, the whole run as CSV (units in the column names) streamed as it is read, `limit` and `cursor` not taken",
        query: Shape::of::<ExportQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<ExportRecord>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::MeterCommands,
        method: "GET",
        path: "/meters/{meter}/commands",
        role: Some(Role::Viewer),
        summary: "A meter's downlink commands and their states, newest first",
        query: Shape::of::<PageQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<CommandView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::SendCommand,
        method: "POST",
        path: "/meters/{meter}/commands",
        role: Some(Role::Operator),
        summary: "Queue a command (valve, self-test, read now, info, reporting interval, disconnect, clock resync, clock-sync periodicity, package version); it goes out after the meter's next uplink. 202 with the command, whose state follows it to the meter",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<CommandBody>()),
        ok: 202,
        answer: Some(Shape::of::<CommandView>()),
        links: &[Link {
            name: "state",
            op: Op::GetCommand,
            parameter: "command",
            pointer: "/id",
        }],
        cached: false,
    },
    Route {
        op: Op::SendRegionCommand,
        method: "POST",
        path: "/regions/{region}/commands",
        role: Some(Role::Operator),
        summary: "Queue a self-test or a clock request (resync, periodicity, package version) for every reporting meter of a region",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<RegionCommandBody>()),
        ok: 202,
        answer: Some(Shape::of::<RegionCommands>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::GetCommand,
        method: "GET",
        path: "/commands/{command}",
        role: Some(Role::Viewer),
        summary: "One command: its state, and what completed it (a read now's reading)",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<CommandDetail>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::ListSchedules,
        method: "GET",
        path: "/self-test-schedules",
        role: Some(Role::Viewer),
        summary: "Self-test schedules, in id order",
        query: Shape::of::<PageQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<ScheduleView>>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::CreateSchedule,
        method: "POST",
        path: "/self-test-schedules",
        role: Some(Role::Operator),
        summary: "Create a self-test schedule for the fleet, a region or a meter",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<ScheduleBody>()),
        ok: 201,
        answer: Some(Shape::of::<ScheduleView>()),
        links: &[
            Link {
                name: "schedule",
                op: Op::GetSchedule,
                parameter: "schedule",
                pointer: "/id",
            },
            Link {
                name: "delete",
                op: Op::DeleteSchedule,
                parameter: "schedule",
                pointer: "/id",
            },
        ],
        cached: false,
    },
    Route {
        op: Op::GetSchedule,
        method: "GET",
        path: "/self-test-schedules/{schedule}",
        role: Some(Role::Viewer),
        summary: "One self-test schedule",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<ScheduleView>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::UpdateSchedule,
        method: "PUT",
        path: "/self-test-schedules/{schedule}",
        role: Some(Role::Operator),
        summary: "Change a self-test schedule",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<ScheduleBody>()),
        ok: 200,
        answer: Some(Shape::of::<ScheduleView>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::DeleteSchedule,
        method: "DELETE",
        path: "/self-test-schedules/{schedule}",
        role: Some(Role::Operator),
        summary: "Delete a self-test schedule (the commands it created stay)",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 204,
        answer: None,
        links: &[],
        cached: false,
    },
    Route {
        op: Op::MeterSelfTests,
        method: "GET",
        path: "/meters/{meter}/self-tests",
        role: Some(Role::Viewer),
        summary: "A meter's self-test results over a time range (default the 365 days before `to`), newest first",
        query: Shape::of::<RangeQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<SelfTestView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::MeterInspections,
        method: "GET",
        path: "/meters/{meter}/inspections",
        role: Some(Role::Viewer),
        summary: "A meter's field visits, newest first",
        query: Shape::of::<PageQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<InspectionView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::RecordInspection,
        method: "POST",
        path: "/meters/{meter}/inspections",
        role: Some(Role::Operator),
        summary: "Record a field visit",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<InspectionBody>()),
        ok: 201,
        answer: Some(Shape::of::<InspectionView>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::ListAlarms,
        method: "GET",
        path: "/alarms",
        role: Some(Role::Viewer),
        summary: "Alarms, newest first, by state, kind, region, meter and time raised",
        query: Shape::of::<AlarmsQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<AlarmView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::GetAlarm,
        method: "GET",
        path: "/alarms/{alarm}",
        role: Some(Role::Viewer),
        summary: "One alarm",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<AlarmView>()),
        links: &[
            Link {
                name: "acknowledge",
                op: Op::AcknowledgeAlarm,
                parameter: "alarm",
                pointer: "/id",
            },
            Link {
                name: "clear",
                op: Op::ClearAlarm,
                parameter: "alarm",
                pointer: "/id",
            },
        ],
        cached: false,
    },
    Route {
        op: Op::AcknowledgeAlarm,
        method: "POST",
        path: "/alarms/{alarm}/acknowledge",
        role: Some(Role::Operator),
        summary: "Acknowledge an open alarm (recorded with the key's name); 409 when it is not open",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<AlarmView>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::ClearAlarm,
        method: "POST",
        path: "/alarms/{alarm}/clear",
        role: Some(Role::Operator),
        summary: "Clear an alarm; 409 when it is already cleared",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<AlarmView>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::ListQuarantine,
        method: "GET",
        path: "/quarantine",
        role: Some(Role::Viewer),
        summary: "Quarantined messages with their reasons, newest first",
        query: Shape::of::<QuarantineQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Page<QuarantinedView>>()),
        links: &[],
        cached: true,
    },
    Route {
        op: Op::ReplayQuarantined,
        method: "POST",
        path: "/quarantine/{id}/replay",
        role: Some(Role::Operator),
        summary: "Run a quarantined message through ingest again once its cause is fixed; 409 with the reason when it would still be quarantined",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<ReplayView>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::ListKeys,
        method: "GET",
        path: "/keys",
        role: Some(Role::Admin),
        summary: "API keys (never their secrets)",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<List<KeyView>>()),
        links: &[],
        cached: false,
    },
    Route {
        op: Op::CreateKey,
        method: "POST",
        path: "/keys",
        role: Some(Role::Admin),
        summary: "Create an API key; the answer holds its secret, shown this once",
        query: Shape::of::<NoQuery>(),
        body: Some(Shape::of::<KeyBody>()),
        ok: 201,
        answer: Some(Shape::of::<KeyView>()),
        links: &[Link {
            name: "revoke",
            op: Op::RevokeKey,
            parameter: "key",
            pointer: "/id",
        }],
        cached: false,
    },
    Route {
        op: Op::RevokeKey,
        method: "DELETE",
        path: "/keys/{key}",
        role: Some(Role::Admin),
        summary: "Revoke an API key",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 204,
        answer: None,
        links: &[],
        cached: false,
    },
    Route {
        op: Op::OpenApi,
        method: "GET",
        path: "/openapi.json",
        role: None,
        summary: "This document",
        query: Shape::of::<NoQuery>(),
        body: None,
        ok: 200,
        answer: Some(Shape::of::<Document>()),
        links: &[],
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

/// The least role that may do `op` (the operator's pages gate their writes by it too).
pub fn role_of(op: Op) -> Option<Role> {
    ROUTES.iter().find(|r| r.op == op).and_then(|r| r.role)
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
