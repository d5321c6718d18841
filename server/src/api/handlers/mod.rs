//! The handlers, one module per family of routes.

pub(crate) mod admin;
pub(crate) mod alarms;
mod billing;
pub(crate) mod commands;
mod data;
pub(crate) mod deletion;
mod lifecycle;
pub(crate) mod registry;
mod supply_points;

use super::error::Problem;
use super::input::MeterRef;
use super::requests::NoQuery;
use super::routes::Op;
use super::{Answer, Request, openapi};
use crate::storage::meters::Meter;

/// Runs the handler of the request's route.
pub async fn handle(req: &Request<'_>) -> Result<Answer, Problem> {
    match req.route.op {
        Op::ListRegions => registry::regions(req).await,
        Op::LatestReadings => registry::latest_readings(req).await,
        Op::SilentMeters => registry::silent_meters(req).await,
        Op::ListMeters => registry::meters(req).await,
        Op::InstallMeter => registry::install(req).await,
        Op::GetMeter => registry::meter(req).await,
        Op::ChangeMeter => lifecycle::change(req).await,
        Op::MeterHistory => lifecycle::history(req).await,
        Op::RetireMeter => lifecycle::retire(req).await,
        Op::MeterFinalReport => lifecycle::final_report(req).await,
        Op::ReplaceMeter => supply_points::replace(req).await,
        Op::SupplyPointConsumption => supply_points::consumption(req).await,
        Op::MeterReadings => data::readings(req).await,
        Op::DeleteReadings => deletion::readings(req).await,
        Op::DeleteAlarms => deletion::alarms(req).await,
        Op::EraseCustomer => deletion::erase(req).await,
        Op::MeterCommands => data::commands(req).await,
        Op::MeterConsumption => billing::meter(req).await,
        Op::ConsumptionRevisions => billing::revisions(req).await,
        Op::RegionConsumption => billing::region(req).await,
        Op::ExportConsumption => billing::export(req).await,
        Op::SendCommand => commands::send(req).await,
        Op::SendRegionCommand => commands::send_region(req).await,
        Op::GetCommand => commands::command(req).await,
        Op::ListSchedules => commands::schedules(req).await,
        Op::CreateSchedule => commands::create_schedule(req).await,
        Op::GetSchedule => commands::schedule(req).await,
        Op::UpdateSchedule => commands::update_schedule(req).await,
        Op::DeleteSchedule => commands::delete_schedule(req).await,
        Op::MeterSelfTests => data::self_tests(req).await,
        Op::MeterInspections => alarms::inspections(req).await,
        Op::RecordInspection => alarms::record_inspection(req).await,
        Op::ListAlarms => alarms::alarms(req).await,
        Op::GetAlarm => alarms::alarm(req).await,
        Op::AcknowledgeAlarm => alarms::acknowledge(req).await,
        Op::ClearAlarm => alarms::clear(req).await,
        Op::ListQuarantine => admin::quarantine(req).await,
        Op::ReplayQuarantined => admin::replay(req).await,
        Op::ListKeys => admin::keys(req).await,
        Op::CreateKey => admin::create_key(req).await,
        Op::RevokeKey => admin::revoke_key(req).await,
        Op::OpenApi => {
            let _: NoQuery = super::input::query(req.query)?;
            Answer::ok(&openapi::document())
        }
    }
}

/// The meter a path or query names, or 404.
async fn find_meter(req: &Request<'_>, r: &MeterRef) -> Result<Meter, Problem> {
    let found = match r {
        MeterRef::DevEui(d) => req.state.store.meter_by_dev_eui(d).await?,
        MeterRef::Serial(s) => req.state.store.meter_by_serial(s).await?,
    };
    found.ok_or_else(|| Problem::not_found(format!("no meter {}", r.key())))
}

/// A path parameter that must be a positive integer id.
fn id_param(req: &Request<'_>, i: usize, field: &str) -> Result<i64, Problem> {
    req.param(i)
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Problem::bad_field(field, format!("{:?} is not an id", req.param(i))))
}

/// The cache key of a request: its path and its parsed, re-serialized query (so that
/// parameter order and spelling of defaults do not split the cache).
fn cache_key(req: &Request<'_>, query: &impl serde::Serialize) -> String {
    let q = serde_urlencoded::to_string(query).unwrap_or_default();
    format!("{}|{}|{q}", req.route.path, req.params.join("|"))
}
