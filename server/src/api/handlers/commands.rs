//! The operator's commands to meters (through the downlink queue) and self-test schedules.

use chrono::{DateTime, Utc};
use warp::http::StatusCode;

use super::{NoQuery, cache_key, find_meter, id_param};
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::{
    COMMAND_KINDS, CommandBody, PageQuery, RegionCommandBody, ScheduleBody,
};
use crate::api::views::{
    CommandDetail, CommandView, Page, ReadingView, RegionCommands, ScheduleView,
};
use crate::api::{Answer, ApiState, Fresh, Request, cached};
use crate::cache::Tag;
use crate::downlink::{CommandKind, CommandRequest, EnqueueError};
use crate::storage::Error as StorageError;
use crate::storage::commands::CommandRow;
use crate::storage::meters::Meter;
use crate::storage::schedules::{ScheduleSpec, Scope};

fn tests_bits(names: Option<&[String]>) -> Result<u8, Problem> {
    let names = names.ok_or_else(|| Problem::bad_field("tests", "required for a self-test"))?;
    if names.is_empty() {
        return Err(Problem::bad_field("tests", "at least one test"));
    }
    let mut bits = 0u8;
    for (i, n) in names.iter().enumerate() {
        let t = firmware_protocol::Tests::from_name(n).ok_or_else(|| {
            Problem::bad_field(format!("tests[{i}]"), format!("{n:?} is not a test"))
        })?;
        bits |= t.bits();
    }
    Ok(bits)
}

impl CommandBody {
    fn kind(&self) -> Result<CommandKind, Problem> {
        let required = |field: &str| {
            Problem::bad_field(field.to_owned(), format!("required for {}", self.kind))
        };
        let kind = match self.kind.as_str() {
            "valveOpen" => CommandKind::ValveOpen,
            "valveClose" => CommandKind::ValveClose,
            "selfTest" => CommandKind::SelfTest {
                tests: tests_bits(self.tests.as_deref())?,
            },
            "readNow" => CommandKind::ReadNow,
            "sendInfo" => CommandKind::SendInfo,
            "setReportingInterval" => CommandKind::SetReportingInterval {
                minutes: self.minutes.ok_or_else(|| required("minutes"))?,
            },
            "disconnect" => CommandKind::Disconnect,
            "forceResync" => CommandKind::ForceResync {
                transmissions: self.transmissions.unwrap_or(1),
            },
            "clockPeriodicity" => CommandKind::ClockPeriodicity {
                period: self.period.ok_or_else(|| required("period"))?,
            },
            "packageVersion" => CommandKind::PackageVersion,
            other => {
                return Err(Problem::bad_field(
                    "kind",
                    format!(
                        "{other:?} is not one of {}",
                        COMMAND_KINDS.map(|(k, _, _)| k).join(", ")
                    ),
                ));
            }
        };
        // Arguments that the kind does not take are refused by name rather than ignored.
        let takes = COMMAND_KINDS
            .iter()
            .find(|(k, _, _)| *k == self.kind)
            .map(|(_, required, optional)| [*required, *optional].concat())
            .unwrap_or_default();
        let given = [
            ("tests", self.tests.is_some()),
            ("minutes", self.minutes.is_some()),
            ("transmissions", self.transmissions.is_some()),
            ("period", self.period.is_some()),
        ];
        if let Some((field, _)) = given
            .iter()
            .find(|(field, present)| *present && !takes.contains(field))
        {
            return Err(Problem::bad_field(
                *field,
                format!("{} takes no {field}", self.kind),
            ));
        }
        // Range checks with the protocol's own words.
        kind.frame()
            .map_err(|e| Problem::bad_field(e.field, e.reason))?;
        Ok(kind)
    }

    fn expires_in(&self) -> Result<Option<chrono::Duration>, Problem> {
        match self.expires_in_minutes {
            None => Ok(None),
            Some(m) if (1..=30 * 24 * 60).contains(&m) => {
                Ok(Some(chrono::Duration::minutes(i64::from(m))))
            }
            Some(_) => Err(Problem::bad_field(
                "expiresInMinutes",
                "must be between 1 and 43200 (30 days)",
            )),
        }
    }
}

fn enqueue_problem(e: EnqueueError) -> Problem {
    match e {
        EnqueueError::Invalid(i) => Problem::bad_field(i.field, i.reason),
        EnqueueError::UnknownMeter(id) => Problem::not_found(format!("no meter {id}")),
        EnqueueError::Unavailable { status, .. } => {
            Problem::conflict(format!("the meter is {status} and takes no commands"))
        }
        EnqueueError::OutOfService { state, .. } => Problem::conflict(format!(
            "the meter is {} (out of service) and takes no commands",
            state.as_str()
        )),
        EnqueueError::NotForRegion(kind) => Problem::bad_field(
            "kind",
            format!("{kind} is sent meter by meter, not to a whole region"),
        ),
        EnqueueError::Storage(e) => e.into(),
    }
}

/// POST /meters/{meter}/commands: queued; it goes out after the meter's next uplink.
pub async fn send(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let body: CommandBody = input::json(req.body)?;
    // The body is checked before the meter is looked up: a bad body is a 400 for any meter.
    body.kind()?;
    body.expires_in()?;
    let m = find_meter(req, &r).await?;
    let row = send_command(req.state, &m, &body, &req.caller_name()).await?;
    let id = row.id;
    Ok(Answer::json(StatusCode::ACCEPTED, &CommandView::from(row))?
        .at(format!("/api/v1/commands/{id}")))
}

/// Queues the command `body` asks of meter `m` in the name of `by`: checked as the API checks
/// it, then handed to the downlink queue. The API and the pages both send through it.
pub async fn send_command(
    state: &ApiState,
    m: &Meter,
    body: &CommandBody,
    by: &str,
) -> Result<CommandRow, Problem> {
    let kind = body.kind()?;
    let expires_in = body.expires_in()?;
    state
        .downlinks
        .enqueue(CommandRequest {
            meter_id: m.id,
            kind,
            requested_by: by.to_owned(),
            expires_in,
        })
        .await
        .map_err(enqueue_problem)
}

/// POST /regions/{region}/commands: a self-test or clock request for every reporting meter of
/// a region.
pub async fn send_region(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let region = req.param(0).to_owned();
    let RegionCommandBody(body) = input::json(req.body)?;
    let kind = body.kind()?;
    let expires_in = body.expires_in()?;
    let s = req.state;
    if !s.store.regions().await?.iter().any(|r| r.id == region) {
        return Err(Problem::not_found(format!("no region {region:?}")));
    }
    let rows = s
        .downlinks
        .enqueue_many(Some(&region), kind, &req.caller_name(), expires_in)
        .await
        .map_err(enqueue_problem)?;
    Answer::json(
        StatusCode::ACCEPTED,
        &RegionCommands {
            region,
            kind: kind.name().to_owned(),
            commands: rows.len(),
        },
    )
}

/// GET /commands/{command}: cached under its meter's tag, like the meter's command list.
pub async fn command(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: NoQuery = input::query(req.query)?;
    let id = uuid::Uuid::parse_str(req.param(0)).map_err(|_| {
        Problem::bad_field("command", format!("{:?} is not a command id", req.param(0)))
    })?;
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        let c = match s.store.command(id).await {
            Ok(c) => c,
            Err(StorageError::NotFound) => {
                return Err(Problem::not_found(format!("no command {id}")));
            }
            Err(e) => return Err(e.into()),
        };
        let result: Option<serde_json::Value> = c
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        let reading_time = result
            .as_ref()
            .filter(|_| c.kind == "readNow")
            .and_then(|r| r.get("readingTime"))
            .and_then(|t| serde_json::from_value::<DateTime<Utc>>(t.clone()).ok());
        let reading = match reading_time {
            Some(t) => s
                .store
                .readings_for_meter(c.meter_id, t, t + chrono::Duration::seconds(1), 1)
                .await?
                .pop()
                .map(ReadingView::from),
            None => None,
        };
        // The reading shown is the meter's too: one tag covers both.
        let tags = vec![Tag::Meter(c.meter_id)];
        Fresh::new(
            &CommandDetail {
                meter_id: c.meter_id,
                sent_at: c.sent_at,
                completed_at: c.completed_at,
                deadline_at: c.deadline_at,
                schedule_id: c.schedule_id,
                result,
                reading,
                command: CommandView::from(c),
            },
            tags,
            None,
        )
    })
    .await
}

async fn spec(req: &Request<'_>) -> Result<ScheduleSpec, Problem> {
    let body: ScheduleBody = input::json(req.body)?;
    let s = req.state;
    let scope = match body.scope.as_str() {
        "fleet" => {
            if body.region.is_some() {
                return Err(Problem::bad_field(
                    "region",
                    "a fleet schedule names no region",
                ));
            }
            if body.meter.is_some() {
                return Err(Problem::bad_field(
                    "meter",
                    "a fleet schedule names no meter",
                ));
            }
            Scope::Fleet
        }
        "region" => {
            let region = body
                .region
                .clone()
                .ok_or_else(|| Problem::bad_field("region", "required for a region schedule"))?;
            if body.meter.is_some() {
                return Err(Problem::bad_field(
                    "meter",
                    "a region schedule names no meter",
                ));
            }
            if !s.store.regions().await?.iter().any(|r| r.id == region) {
                return Err(Problem::bad_field(
                    "region",
                    format!("no region {region:?}"),
                ));
            }
            Scope::Region { region_id: region }
        }
        "meter" => {
            let text = body
                .meter
                .as_deref()
                .ok_or_else(|| Problem::bad_field("meter", "required for a meter schedule"))?;
            if body.region.is_some() {
                return Err(Problem::bad_field(
                    "region",
                    "a meter schedule names no region",
                ));
            }
            let r = MeterRef::parse(text, "meter")?;
            let m = find_meter(req, &r)
                .await
                .map_err(|p| p.with_field("meter"))?;
            Scope::Meter { meter_id: m.id }
        }
        other => {
            return Err(Problem::bad_field(
                "scope",
                format!("{other:?} is not one of fleet, region, meter"),
            ));
        }
    };
    let tests = tests_bits(Some(&body.tests))?;
    if !(15..=527_040).contains(&body.interval_minutes) {
        return Err(Problem::bad_field(
            "intervalMinutes",
            "must be between 15 and 527040 (a year)",
        ));
    }
    Ok(ScheduleSpec {
        scope,
        tests,
        interval_minutes: body.interval_minutes,
        next_run_at: body.next_run_at.unwrap_or_else(|| s.now()),
        enabled: body.enabled.unwrap_or(true),
    })
}

/// GET /self-test-schedules
pub async fn schedules(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: PageQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::id_cursor(q.cursor.as_deref())?.unwrap_or(0);
    let rows = req.state.store.schedules(after, limit).await?;
    let page = Page::of(rows, limit, |s| Some(s.id.to_string()), ScheduleView::from);
    Answer::ok(&page)
}

/// POST /self-test-schedules
pub async fn create_schedule(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let spec = spec(req).await?;
    let s = req.state;
    let row = s
        .store
        .create_schedule(&spec, &req.caller_name(), s.now())
        .await?;
    let id = row.id;
    Ok(Answer::json(StatusCode::CREATED, &ScheduleView::from(row))?
        .at(format!("/api/v1/self-test-schedules/{id}")))
}

/// GET /self-test-schedules/{schedule}
pub async fn schedule(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let id = id_param(req, 0, "schedule")?;
    match req.state.store.schedule(id).await {
        Ok(s) => Answer::ok(&ScheduleView::from(s)),
        Err(StorageError::NotFound) => Err(Problem::not_found(format!("no schedule {id}"))),
        Err(e) => Err(e.into()),
    }
}

/// PUT /self-test-schedules/{schedule}
pub async fn update_schedule(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let id = id_param(req, 0, "schedule")?;
    let spec = spec(req).await?;
    let s = req.state;
    match s.store.update_schedule(id, &spec, s.now()).await {
        Ok(row) => Answer::ok(&ScheduleView::from(row)),
        Err(StorageError::NotFound) => Err(Problem::not_found(format!("no schedule {id}"))),
        Err(e) => Err(e.into()),
    }
}

/// DELETE /self-test-schedules/{schedule}
pub async fn delete_schedule(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let id = id_param(req, 0, "schedule")?;
    match req.state.store.delete_schedule(id).await {
        Ok(()) => Ok(Answer::empty(StatusCode::NO_CONTENT)),
        Err(StorageError::NotFound) => Err(Problem::not_found(format!("no schedule {id}"))),
        Err(e) => Err(e.into()),
    }
}
