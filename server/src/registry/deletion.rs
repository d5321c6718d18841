//! Deleting part of a meter's data, shared by the API, the pages and the command line: what
//! a request asks ([`Ask`], checked by the pure [`check`]), what a deletion would remove and
//! which closed billing periods it touches (a dry run answers only that), and the deletion
//! itself: refused inside a closed period unless forced with a reason, in which case each
//! such period gets a revision in the deletion's transaction, so a published bill never
//! changes without a trace.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::record::{FieldError, reason_too_long};
use crate::billing::Calendar;
use crate::billing::closing::deletion_revisions;
use crate::cache::{Changes, Touched};
use crate::storage::billing_periods::{ClosedPeriod, StoredRevision};
use crate::storage::deletion::{CustomerRows, Data, InRange};
use crate::storage::lifecycle::{Actor, AuditAction, NewAudit};
use crate::storage::meters::Meter;
use crate::storage::{self, Store};

/// A deletion asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// Readings or alarms.
    pub data: Data,
    /// Start of the range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    /// Only say what would go.
    pub dry_run: bool,
    /// Delete inside closed billing periods too (readings only; needs a reason).
    pub force: bool,
    /// Why (blank: none given).
    pub reason: String,
}

/// The problems of an ask, each naming its field (the API's names; the command line turns
/// them into flags): the range must not be empty, a deletion (not a dry run) and a forced
/// one need a reason, and only readings can be forced.
pub fn check(ask: &Ask) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if ask.from >= ask.to {
        errors.push(FieldError {
            field: "from",
            message: "must be before `to`".into(),
        });
    }
    if ask.reason.trim().is_empty() && (!ask.dry_run || ask.force) {
        errors.push(FieldError {
            field: "reason",
            message: "is required to delete (and to force), and may not be blank".into(),
        });
    }
    errors.extend(reason_too_long(&ask.reason));
    if ask.force && ask.data == Data::Alarms {
        errors.push(FieldError {
            field: "force",
            message: "applies to readings only: alarms are not billed".into(),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What a deletion removed, or (dry run) would remove.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The ask.
    pub ask: Ask,
    /// The rows in the range (when deleted: those the deletion removed).
    pub found: InRange,
    /// The closed billing periods the range overlaps.
    pub closed: Vec<ClosedPeriod>,
    /// Whether deleting needs `force` (and a reason): the range touches closed periods.
    pub force_required: bool,
    /// The revisions the deletion added (none for a dry run).
    pub revisions: Vec<StoredRevision>,
    /// Whether anything was deleted (false for a dry run).
    pub deleted: bool,
}

/// Why a deletion was not made.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Fields that do not validate, each named.
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// The range touches closed billing periods and the deletion was not forced.
    #[error("{}", closed_detail(.0))]
    Closed(Vec<ClosedPeriod>),
    /// Nothing names the customer.
    #[error("{0}")]
    Unknown(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A closed period as people read it: `month 2026-05-01`.
pub fn period_name(c: &ClosedPeriod) -> String {
    format!("{} {}", c.kind, c.first_day)
}

fn closed_detail(closed: &[ClosedPeriod]) -> String {
    format!(
        "the range touches closed billing periods ({}): their published figures stay, and \
         deleting needs force=true with a reason, which adds a revision of each",
        closed
            .iter()
            .map(period_name)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Deletes (or, dry run, looks at) `meter`'s readings or alarms in the asked range as `who`,
/// announcing the write on `changes` (the meter's and its region's answers).
pub async fn delete(
    store: &Store,
    changes: &Changes,
    calendar: &Calendar,
    meter: &Meter,
    ask: Ask,
    who: Actor,
) -> Result<Outcome, Refused> {
    check(&ask).map_err(Refused::Invalid)?;
    let range = (ask.from, ask.to);
    let found = store.in_range(ask.data, meter.id, range).await?;
    let closed = match ask.data {
        Data::Readings => store.closed_overlapping(meter.id, range).await?,
        Data::Alarms => Vec::new(),
    };
    let force_required = !closed.is_empty();
    let mut outcome = Outcome {
        ask,
        found,
        closed,
        force_required,
        revisions: Vec::new(),
        deleted: false,
    };
    if outcome.ask.dry_run {
        return Ok(outcome);
    }
    if force_required && !outcome.ask.force {
        return Err(Refused::Closed(outcome.closed));
    }
    let side = |count: i64| {
        let mut v = json!({"from": outcome.ask.from, "to": outcome.ask.to});
        if let Some(o) = v.as_object_mut() {
            o.insert(outcome.ask.data.as_str().into(), json!(count));
        }
        v
    };
    let (before, mut after) = (side(found.count), side(0));
    let touched = Touched::meter(meter.id, &meter.region_id);
    let pending = changes.begin(&touched);
    match outcome.ask.data {
        Data::Readings => {
            let revisions =
                deletion_revisions(store, calendar, meter, range, &outcome.closed, who.at).await?;
            if let Some(a) = after.as_object_mut() {
                a.insert("forced".into(), json!(outcome.ask.force));
                a.insert(
                    "closedPeriods".into(),
                    json!(outcome.closed.iter().map(period_name).collect::<Vec<_>>()),
                );
            }
            let audit = NewAudit {
                meter_id: meter.id,
                action: AuditAction::DeleteReadings,
                before,
                after,
            };
            let ((deleted, stored), ()) = store
                .delete_readings(meter.id, range, &revisions, (&audit, &who), |_| ())
                .await?;
            outcome.found.count = i64::try_from(deleted).unwrap_or(i64::MAX);
            outcome.revisions = stored;
        }
        Data::Alarms => {
            let audit = NewAudit {
                meter_id: meter.id,
                action: AuditAction::DeleteAlarms,
                before,
                after,
            };
            let (deleted, ()) = store
                .delete_alarms(meter.id, range, (&audit, &who), |_| ())
                .await?;
            outcome.found.count = i64::try_from(deleted).unwrap_or(i64::MAX);
        }
    }
    pending.committed(&touched).await;
    outcome.deleted = true;
    Ok(outcome)
}

/// A customer's erasure: what named them, and the token that replaced their id.
#[derive(Debug, Clone, PartialEq)]
pub struct Erased {
    /// The rows that named the customer (a dry run: that would change).
    pub found: CustomerRows,
    /// The anonymous token now in their id's place (`None` for a dry run).
    pub token: Option<String>,
}

/// Erases customer `user_id`'s personal data (or, `dry_run`, says what names them): their
/// id on meters and supply points, in the notes of their meters' visits, in audit rows and
/// final reports is replaced by one anonymous token, so their readings and consumption stay
/// together, no longer theirs by name. Audited on each of their meters, announced on
/// `changes`.
pub async fn erase_customer(
    store: &Store,
    changes: &Changes,
    user_id: &str,
    dry_run: bool,
    who: Actor,
) -> Result<Erased, Refused> {
    let mut errors = Vec::new();
    if user_id.trim().is_empty() {
        errors.push(FieldError {
            field: "customer",
            message: "is blank".into(),
        });
    }
    if !dry_run && who.reason.trim().is_empty() {
        errors.push(FieldError {
            field: "reason",
            message: "is required to erase, and may not be blank".into(),
        });
    }
    errors.extend(reason_too_long(&who.reason));
    if !errors.is_empty() {
        return Err(Refused::Invalid(errors));
    }
    let found = store.customer_rows(user_id).await?;
    if found.is_empty() {
        return Err(Refused::Unknown(format!(
            "no customer {user_id:?}: no meter, supply point or record names them"
        )));
    }
    if dry_run {
        return Ok(Erased { found, token: None });
    }
    // Random, not derived from the id: nothing can lead back from the token to the person.
    let token = format!("erased-{}", uuid::Uuid::new_v4().simple());
    let mut touched = Touched::default();
    for (id, _, region) in &found.meters {
        touched.add(*id, region);
    }
    let ids: Vec<i64> = found.meters.iter().map(|(id, _, _)| *id).collect();
    let pending = changes.begin(&touched);
    let (found, ()) = store
        .erase_customer(user_id, &token, &ids, &who, |_| ())
        .await?;
    pending.committed(&touched).await;
    Ok(Erased {
        found,
        token: Some(token),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn ask(data: Data, dry_run: bool, force: bool, reason: &str) -> Ask {
        let t = |d| {
            Utc.with_ymd_and_hms(2026, 5, d, 0, 0, 0)
                .single()
                .expect("time")
        };
        Ask {
            data,
            from: t(1),
            to: t(2),
            dry_run,
            force,
            reason: reason.into(),
        }
    }

    fn fields(r: Result<(), Vec<FieldError>>) -> Vec<&'static str> {
        r.err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_dry_run_needs_no_reason_but_a_deletion_and_a_forced_one_do() {
        assert!(check(&ask(Data::Readings, true, false, "")).is_ok());
        assert_eq!(
            fields(check(&ask(Data::Readings, false, false, " "))),
            ["reason"]
        );
        assert_eq!(
            fields(check(&ask(Data::Readings, true, true, ""))),
            ["reason"]
        );
        assert!(check(&ask(Data::Readings, false, true, "meter swapped")).is_ok());
    }

    #[test]
    fn an_empty_or_backward_range_and_forced_alarms_are_named() {
        let mut a = ask(Data::Alarms, false, true, "x");
        a.to = a.from;
        assert_eq!(fields(check(&a)), ["from", "force"]);
    }
}
