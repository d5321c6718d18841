//! Regions, meters, connectivity and the latest readings of a region.

use warp::http::StatusCode;

use super::{cache_key, find_meter};
use crate::api::error::Problem;
use crate::api::input::{self, MeterRef};
use crate::api::requests::{MeterInstall, MetersQuery, NoQuery, PageQuery, SilentQuery};
use crate::api::routes::METER_STATUSES;
use crate::api::views::{
    DeviceStatusView, LatestReadingView, List, MeterDetailsView, MeterView, Page, ReadingView,
    RegionView, next_overdue,
};
use crate::api::{Answer, ApiState, Fresh, Request, cached};
use crate::cache::{Tag, Touched};
use crate::registry::MeterRecord;
use crate::registry::lifecycle::{diff, registration_json};
use crate::registry::record::{FieldError, validate_with_keys};
use crate::storage::Error as StorageError;
use crate::storage::lifecycle::{Actor, AuditAction, NewAudit, ServiceState};
use crate::storage::listings::MeterFilter;
use crate::storage::meters::{Meter, NewMeter, Registered};

/// GET /regions
pub async fn regions(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: NoQuery = input::query(req.query)?;
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        let now = s.now();
        let rows = s.store.region_summaries(now).await?;
        let until = s.store.next_overdue(None, now).await?;
        let items: Vec<RegionView> = rows.into_iter().map(RegionView::from).collect();
        Fresh::new(&List { items }, vec![Tag::All], until)
    })
    .await
}

/// GET /regions/{region}/readings/latest
pub async fn latest_readings(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: PageQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::id_cursor(q.cursor.as_deref())?.unwrap_or(0);
    let region = req.param(0).to_owned();
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        if !s.store.region_exists(&region).await? {
            return Err(Problem::not_found(format!("no region {region:?}")));
        }
        let rows = s.store.latest_readings(&region, after, limit).await?;
        let page = Page::of(
            rows,
            limit,
            |r| Some(r.reading.meter_id.to_string()),
            |r| LatestReadingView {
                dev_eui: r.dev_eui,
                reading: ReadingView::from(r.reading),
            },
        );
        Fresh::new(&page, vec![Tag::Region(region.clone())], None)
    })
    .await
}

/// GET /connectivity
pub async fn silent_meters(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: SilentQuery = input::query(req.query)?;
    let limit = input::limit(q.limit)?;
    let after = input::pair_cursor::<i64>(q.cursor.as_deref())?;
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        let now = s.now();
        let region = q.region.as_deref();
        let rows = s.store.silent_meters(region, now, after, limit).await?;
        let until = s.store.next_overdue(region, now).await?;
        let tags = match region {
            Some(r) => vec![Tag::Region(r.to_owned())],
            None => vec![Tag::All],
        };
        let page = Page::of(
            rows,
            limit,
            |m| {
                m.overdue_at
                    .map(|t| format!("{}|{}", input::time_key(t), m.id))
            },
            |m| MeterView::new(m, now),
        );
        Fresh::new(&page, tags, until)
    })
    .await
}

/// GET /meters
pub async fn meters(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: MetersQuery = input::query(req.query)?;
    input::one_of(q.status.as_deref(), &METER_STATUSES, "status")?;
    let limit = input::limit(q.limit)?;
    let after = input::id_cursor(q.cursor.as_deref())?.unwrap_or(0);
    let s = req.state;
    let filter = MeterFilter {
        region: q.region.clone(),
        status: q.status.clone(),
        user_id: q.user_id.clone(),
        ..MeterFilter::default()
    };
    cached(req, cache_key(req, &q), || async {
        let now = s.now();
        let rows = s.store.meters_filtered(&filter, after, limit).await?;
        let until = next_overdue(&rows, now);
        let tags = match &filter.region {
            Some(r) if filter.user_id.is_none() && filter.status.is_none() => {
                vec![Tag::Region(r.clone())]
            }
            _ => vec![Tag::All],
        };
        let page = Page::of(
            rows,
            limit,
            |m| Some(m.id.to_string()),
            |m| MeterView::new(m, now),
        );
        Fresh::new(&page, tags, until)
    })
    .await
}

/// GET /meters/{meter}
pub async fn meter(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: NoQuery = input::query(req.query)?;
    let r = MeterRef::parse(req.param(0), "meter")?;
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        let now = s.now();
        let m = find_meter(req, &r).await?;
        let status = s.store.device_status(m.id).await?;
        let installation = s.store.open_installation(m.id).await?;
        let until = m.overdue_at.filter(|t| *t >= now);
        // A status report is announced under its meter, as the batch that stores it.
        let tags = vec![Tag::Meter(m.id)];
        let details = MeterDetailsView {
            meter: MeterView::new(m, now),
            device_status: status.map(DeviceStatusView::from),
            installation,
        };
        Fresh::new(&details, tags, until)
    })
    .await
}

/// POST /meters
pub async fn install(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    // Unknown fields are refused (a misspelt field would otherwise pass as missing or, worse,
    // as a default).
    let body: MeterInstall = input::json(req.body)?;
    let (registered, m) =
        install_meter_as(req.state, &MeterRecord::from(body), &req.caller_name()).await?;
    let status = if registered == Registered::Inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/meters/{}", m.dev_eui);
    Ok(Answer::json(status, &MeterView::new(m, req.state.now()))?.at(location))
}

/// Why a meter was not installed.
#[derive(Debug)]
pub enum InstallError {
    /// Fields that failed validation, every one of them.
    Invalid(Vec<FieldError>),
    /// Anything else (a serial of another meter, the database).
    Refused(Problem),
}

impl From<InstallError> for Problem {
    /// A 400 naming the first field at fault, with every field's message in the detail.
    fn from(e: InstallError) -> Problem {
        match e {
            InstallError::Invalid(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let field = errors.first().map_or("body", |e| e.field);
                Problem::bad_field(field, detail)
            }
            InstallError::Refused(p) => p,
        }
    }
}

impl From<Problem> for InstallError {
    fn from(p: Problem) -> InstallError {
        InstallError::Refused(p)
    }
}

impl From<StorageError> for InstallError {
    fn from(e: StorageError) -> InstallError {
        InstallError::Refused(e.into())
    }
}

/// [`install_meter_as`] recorded in the meter's history as done through the operator's pages.
pub async fn install_meter(
    state: &ApiState,
    record: &MeterRecord,
) -> Result<(Registered, Meter), InstallError> {
    install_meter_as(state, record, "pages").await
}

/// Installs (registers) the meter `record` describes, validated as `meterhub meters import`
/// validates it, and announces the change: whether it was new, changed, back from stock or
/// the same, and the meter as stored; `by` is recorded in its history. A destroyed meter is
/// refused (409 naming `devEui`). The API and the pages both install through it.
pub async fn install_meter_as(
    state: &ApiState,
    record: &MeterRecord,
    by: &str,
) -> Result<(Registered, Meter), InstallError> {
    let (new, keys) =
        validate_with_keys(record, state.now().date_naive()).map_err(InstallError::Invalid)?;
    let s = state;
    let now = s.now();
    let before = s.store.meter_by_dev_eui(&new.dev_eui).await?;
    if let Some(gone) = before
        .as_ref()
        .filter(|m| m.service_state == ServiceState::Destroyed)
    {
        return Err(Problem::conflict(format!(
            "meter {} was destroyed and cannot be installed again",
            gone.dev_eui
        ))
        .with_field("devEui")
        .into());
    }
    let audit = install_audit(before.as_ref(), &new);
    // Begun with what is known before the write (a new meter's id is not).
    let mut expected = Touched::default();
    expected.regions.insert(new.region_id.clone());
    if let Some(old) = &before {
        expected.add(old.id, &old.region_id);
    }
    let pending = s.changes.begin(&expected);
    let who = Actor {
        name: by.to_owned(),
        at: now,
        reason: "installed".into(),
    };
    let (registered, id) = match s.store.install_meter(&new, &audit, &who).await {
        Ok(r) => r,
        Err(StorageError::Conflict(detail)) => {
            return Err(Problem::conflict(detail).with_field("serial").into());
        }
        Err(e) => return Err(e.into()),
    };
    // Stored after the meter: should this fail, the install is answered with an error and a
    // second one (idempotent) stores them.
    if let Some(keys) = &keys {
        s.store.set_device_keys(&new.dev_eui, keys, now).await?;
    }
    // ChirpStack's device list follows (a round of the sync, when it is configured).
    s.registry_changed.notify_one();
    // Announced at once: a failure between the commit and the announcement (reading the
    // meter back, say) would leave every cache serving the old details.
    if registered != Registered::Unchanged {
        pending.committed(&Touched::meter(id, &new.region_id)).await;
    } else {
        drop(pending);
    }
    let m = s
        .store
        .meter_by_dev_eui(&new.dev_eui)
        .await?
        .ok_or_else(|| Problem::internal(&"a meter just registered cannot be read back"))?;
    Ok((registered, m))
}

/// The audit row of an install: the whole registration for a new meter; for one back from
/// stock, its state and what changed; for a registered one, what changed.
fn install_audit(old: Option<&Meter>, new: &NewMeter) -> NewAudit {
    let (action, before, after) = match old {
        None => (
            AuditAction::Install,
            serde_json::Map::new(),
            registration_json(new),
        ),
        Some(old) => {
            let (mut b, mut a) = diff(&old.registration(), new);
            let action = if old.service_state == ServiceState::Removed {
                b.insert("serviceState".into(), old.service_state.as_str().into());
                a.insert(
                    "serviceState".into(),
                    ServiceState::InService.as_str().into(),
                );
                AuditAction::Reinstall
            } else {
                AuditAction::Change
            };
            (action, b, a)
        }
    };
    NewAudit {
        meter_id: old.map_or(0, |m| m.id),
        action,
        before: serde_json::Value::Object(before),
        after: serde_json::Value::Object(after),
    }
}
