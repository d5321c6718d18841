//! Quarantine (list, replay) and API keys.

use std::collections::HashMap;

use warp::http::StatusCode;

use super::{cache_key, id_param};
use crate::api::auth;
use crate::api::error::Problem;
use crate::api::input;
use crate::api::requests::{KeyBody, NoQuery, QuarantineQuery};
use crate::api::views::{KeyView, List, Page, QuarantinedView, ReplayView};
use crate::api::{Answer, ApiState, Fresh, Request, cached};
use crate::cache::{Tag, Touched};
use crate::storage::ingest::Effect;
use crate::uplink::Reason;
use crate::uplink::classify::{Context, parse, plan};

/// GET /quarantine
pub async fn quarantine(req: &Request<'_>) -> Result<Answer, Problem> {
    let q: QuarantineQuery = input::query(req.query)?;
    if let Some(r) = &q.reason
        && Reason::from_name(r).is_none()
    {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        return Err(Problem::bad_field(
            "reason",
            format!("{r:?} is not one of {}", names.join(", ")),
        ));
    }
    let limit = input::limit(q.limit)?;
    let before = input::id_cursor(q.cursor.as_deref())?.unwrap_or(i64::MAX);
    let s = req.state;
    cached(req, cache_key(req, &q), || async {
        let rows = s
            .store
            .quarantined(q.reason.as_deref(), before, limit)
            .await?;
        let page = Page::of(
            rows,
            limit,
            |r| Some(r.id.to_string()),
            QuarantinedView::from,
        );
        Fresh::new(&page, vec![Tag::All], None)
    })
    .await
}

/// POST /quarantine/{id}/replay: the stored message goes through the bridge's own parse and
/// plan steps and, when nothing quarantines it any more, the same batch apply (so a replay
/// twice applies once: the event's identity is recorded).
pub async fn replay(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let id = id_param(req, 0, "id")?;
    Answer::ok(&replay_quarantined(req.state, id).await?)
}

/// Replays quarantined message `id` (see `POST /quarantine/{id}/replay`): what it applied, or
/// a 409 with the reason it would still be quarantined. The API and the pages both replay
/// through it.
pub async fn replay_quarantined(s: &ApiState, id: i64) -> Result<ReplayView, Problem> {
    let row = s
        .store
        .quarantined_by_id(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no quarantined message {id}")))?;
    let now = s.now();
    let parsed = parse(&s.template, &row.topic, &row.payload);
    let keys: Vec<String> = parsed
        .registry_key()
        .map(str::to_owned)
        .into_iter()
        .collect();
    let meters: HashMap<String, _> = s
        .store
        .meters_by_dev_euis(&keys)
        .await?
        .into_iter()
        .map(|m| (m.dev_eui.clone(), m))
        .collect();
    let ctx = Context {
        meters: &meters,
        now,
        policy: &s.policy,
    };
    let the_plan = plan(parsed, &row.topic, &row.payload, &ctx);
    if let Some(Effect::Quarantine(q)) = the_plan
        .effects
        .iter()
        .find(|e| matches!(e, Effect::Quarantine(_)))
    {
        return Err(Problem::conflict(format!(
            "the message would still be quarantined: {}: {}",
            q.reason, q.detail
        )));
    }
    let mut touched = Touched::default();
    for m in meters.values() {
        touched.add(m.id, &m.region_id);
    }
    let outcome = match s
        .store
        .apply_batch(std::slice::from_ref(&the_plan), now, |outcome| {
            s.changes
                .begin(&touched.and_meters(&outcome.command_meters))
        })
        .await
    {
        Ok((o, write)) => {
            // Announced before marking the message replayed: that write may fail, and the
            // effects are committed already.
            write.announce().await;
            o
        }
        Err(e) if !e.is_transient() => {
            tracing::warn!(error = %e, id, "replay refused by the database");
            return Err(Problem::conflict(
                "the database still refuses this message's rows",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // The quarantine list (a fleet-wide response) changes again.
    let write = s.changes.begin(&Touched::default());
    s.store.mark_replayed(id, now).await?;
    write.announce().await;
    Ok(ReplayView {
        id,
        applied: outcome.applied.first().copied().unwrap_or(false),
        readings: outcome.readings,
        alarms: outcome.alarms,
        replayed_at: row.replayed_at.unwrap_or(now),
    })
}

/// GET /keys
pub async fn keys(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let rows = req.state.store.api_keys().await?;
    let items: Vec<KeyView> = rows.into_iter().map(KeyView::from).collect();
    Answer::ok(&List { items })
}

/// POST /keys
pub async fn create_key(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let body: KeyBody = input::json(req.body)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Problem::bad_field("name", "must be 1 to 100 characters"));
    }
    let s = req.state;
    let key = auth::generate(name, body.role, s.now());
    s.store.insert_api_key(&key.row).await?;
    s.keys.reload(&s.store).await?;
    let id = key.row.id;
    let mut view = KeyView::from(key.row);
    view.secret = Some(key.secret);
    Ok(Answer::json(StatusCode::CREATED, &view)?.at(format!("/api/v1/keys/{id}")))
}

/// DELETE /keys/{key}
pub async fn revoke_key(req: &Request<'_>) -> Result<Answer, Problem> {
    let _: NoQuery = input::query(req.query)?;
    let id = uuid::Uuid::parse_str(req.param(0))
        .map_err(|_| Problem::bad_field("key", format!("{:?} is not a key id", req.param(0))))?;
    let s = req.state;
    s.store
        .revoke_api_key(id, s.now())
        .await
        .map_err(|e| match e {
            crate::storage::Error::NotFound => Problem::not_found(format!("no key {id}")),
            e => e.into(),
        })?;
    s.keys.reload(&s.store).await?;
    Ok(Answer::empty(StatusCode::NO_CONTENT))
}
