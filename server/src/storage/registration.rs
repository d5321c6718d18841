//! Registering meters many at a time (`meters import`): one lookup of a batch's DevEUIs and
//! serials, a decision per meter made in memory against what that lookup found, and one
//! upsert of the meters that change — a few statements per batch, whatever its size.

use super::lifecycle::ServiceState;
use super::meters::{Meter, NewMeter, Registered};

/// What registering one meter came to: done, or refused with why (a serial held by another
/// DevEUI).
pub type Outcome = Result<Registered, String>;

/// Decides one meter against the registered meter with its DevEUI and the one with its
/// serial: a serial registered to another DevEUI is a conflict; otherwise the meter is new,
/// changed or unchanged.
pub fn decide(new: &NewMeter, by_dev_eui: Option<&Meter>, by_serial: Option<&Meter>) -> Outcome {
    if let Some(other) = by_serial.filter(|o| o.dev_eui != new.dev_eui) {
        return Err(format!(
            "serial {} is registered to devEui {}",
            new.serial, other.dev_eui
        ));
    }
    if let Some(gone) = by_dev_eui.filter(|m| m.service_state == ServiceState::Destroyed) {
        return Err(format!(
            "meter {} was destroyed and cannot be installed again",
            gone.dev_eui
        ));
    }
    Ok(match by_dev_eui {
        // A meter back from stock is installed again even with the same details.
        Some(existing)
            if existing.matches(new) && existing.service_state == ServiceState::InService =>
        {
            Registered::Unchanged
        }
        Some(_) => Registered::Updated,
        None => Registered::Inserted,
    })
}

/// Decides each meter of a batch against the registered meters that share a DevEUI or a
/// serial with one of them.
fn decide_all(batch: &[NewMeter], registered: &[Meter]) -> Vec<Outcome> {
    use std::collections::HashMap;
    let by_dev_eui: HashMap<&str, &Meter> =
        registered.iter().map(|m| (m.dev_eui.as_str(), m)).collect();
    let by_serial: HashMap<&str, &Meter> =
        registered.iter().map(|m| (m.serial.as_str(), m)).collect();
    batch
        .iter()
        .map(|m| {
            decide(
                m,
                by_dev_eui.get(m.dev_eui.as_str()).copied(),
                by_serial.get(m.serial.as_str()).copied(),
            )
        })
        .collect()
}

/// The meters of a batch to write: those new or changed.
fn to_write<'a>(batch: &'a [NewMeter], outcomes: &[Outcome]) -> Vec<&'a NewMeter> {
    batch
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| matches!(o, Ok(Registered::Inserted | Registered::Updated)))
        .map(|(m, _)| m)
        .collect()
}

/// The regions the meters to write name, each once.
fn regions<'a>(meters: &[&'a NewMeter]) -> Vec<&'a str> {
    let set: std::collections::BTreeSet<&str> =
        meters.iter().map(|m| m.region_id.as_str()).collect();
    set.into_iter().collect()
}

/// Columns set by a registration, in the order both dialects bind them.
const INSERT: &str = "INSERT INTO meters (dev_eui, serial, body_number, user_id, \
     application_id, region_id, usage_type, mode, production_date, status, \
     reporting_interval_minutes, created_at, updated_at) ";

/// What an existing meter's registration changes (status and link state are the bridge's).
const ON_CONFLICT: &str = " ON CONFLICT (dev_eui) DO UPDATE SET serial = excluded.serial, \
     body_number = excluded.body_number, user_id = excluded.user_id, \
     application_id = excluded.application_id, region_id = excluded.region_id, \
     usage_type = excluded.usage_type, mode = excluded.mode, \
     production_date = excluded.production_date, \
     reporting_interval_minutes = excluded.reporting_interval_minutes, \
     updated_at = excluded.updated_at, status = CASE WHEN meters.service_state = 'removed' \
     THEN 'installed' ELSE meters.status END, service_state = 'in_service'";

/// What puts a meter back from stock in service when it is registered again: never heard at
/// its new place, and in service (a destroyed meter is refused before).
pub(crate) const BACK_IN_SERVICE: &str = "status = CASE WHEN meters.service_state = 'removed' \
     THEN 'installed' ELSE meters.status END, service_state = 'in_service'";

/// Queries on SQLite.
pub(crate) mod sqlite {
    use chrono::{DateTime, Utc};
    use sqlx::{QueryBuilder, Sqlite};

    use super::*;
    use crate::storage::Result;

    type Conn = sqlx::SqliteConnection;

    /// Rows per statement: SQLite allows 32 766 binds, a meter takes 11.
    const ROWS: usize = 2_000;

    /// Registers a batch (inside the caller's transaction); one outcome per meter, in order.
    pub async fn register_batch(
        conn: &mut Conn,
        batch: &[NewMeter],
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>> {
        let mut registered = Vec::new();
        for column in ["dev_eui", "serial"] {
            for chunk in batch.chunks(ROWS) {
                let mut q = QueryBuilder::<Sqlite>::new(format!(
                    "SELECT {} FROM meters WHERE {column} IN (",
                    crate::storage::meters::METER_COLUMNS
                ));
                let mut list = q.separated(", ");
                for m in chunk {
                    list.push_bind(if column == "serial" {
                        &m.serial
                    } else {
                        &m.dev_eui
                    });
                }
                q.push(")");
                registered.extend(q.build_query_as::<Meter>().fetch_all(&mut *conn).await?);
            }
        }
        let outcomes = decide_all(batch, &registered);
        let write = to_write(batch, &outcomes);
        for chunk in regions(&write).chunks(ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO regions (id, name, created_at) ");
            q.push_values(chunk, |mut b, r| {
                b.push_bind(*r).push_bind(*r).push_bind(now);
            });
            q.push(" ON CONFLICT (id) DO NOTHING");
            q.build().execute(&mut *conn).await?;
        }
        for chunk in write.chunks(ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(INSERT);
            q.push_values(chunk, |mut b, m| {
                b.push_bind(&m.dev_eui)
                    .push_bind(&m.serial)
                    .push_bind(m.body_number)
                    .push_bind(&m.user_id)
                    .push_bind(&m.application_id)
                    .push_bind(&m.region_id)
                    .push_bind(&m.usage_type)
                    .push_bind(&m.mode)
                    .push_bind(m.production_date)
                    .push("'installed'")
                    .push_bind(m.reporting_interval_minutes)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.push(ON_CONFLICT);
            q.build().execute(&mut *conn).await?;
        }
        let written: Vec<&str> = write.iter().map(|m| m.dev_eui.as_str()).collect();
        crate::storage::lifecycle::sqlite::open_installations(conn, &written, now).await?;
        Ok(outcomes)
    }
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    use chrono::{DateTime, Utc};
    use sqlx::AssertSqlSafe;

    use super::*;
    use crate::storage::Result;

    type Conn = sqlx::PgConnection;

    /// Registers a batch (inside the caller's transaction) in three statements, whatever its
    /// size: arrays bound whole, unnested by the server.
    pub async fn register_batch(
        conn: &mut Conn,
        batch: &[NewMeter],
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>> {
        let column = |f: fn(&NewMeter) -> &str| -> Vec<&str> { batch.iter().map(f).collect() };
        let sql = format!(
            "SELECT {} FROM meters WHERE dev_eui = ANY($1) OR serial = ANY($2)",
            crate::storage::meters::METER_COLUMNS
        );
        let registered: Vec<Meter> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(column(|m| &m.dev_eui))
            .bind(column(|m| &m.serial))
            .fetch_all(&mut *conn)
            .await?;
        let outcomes = decide_all(batch, &registered);
        let write = to_write(batch, &outcomes);
        if write.is_empty() {
            return Ok(outcomes);
        }
        sqlx::query(
            "INSERT INTO regions (id, name, created_at) SELECT r, r, $2 FROM unnest($1::text[]) \
             AS r ON CONFLICT (id) DO NOTHING",
        )
        .bind(regions(&write))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let text = |f: fn(&NewMeter) -> &str| -> Vec<&str> { write.iter().map(|m| f(m)).collect() };
        let sql = format!(
            "{INSERT} SELECT d, s, b, u, a, r, t, m, p, 'installed', i, $11, $11 \
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::date[], $10::integer[]) \
             AS v (d, s, b, u, a, r, t, m, p, i){ON_CONFLICT}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(text(|m| &m.dev_eui))
            .bind(text(|m| &m.serial))
            .bind(write.iter().map(|m| m.body_number).collect::<Vec<_>>())
            .bind(text(|m| &m.user_id))
            .bind(text(|m| &m.application_id))
            .bind(text(|m| &m.region_id))
            .bind(text(|m| &m.usage_type))
            .bind(text(|m| &m.mode))
            .bind(write.iter().map(|m| m.production_date).collect::<Vec<_>>())
            .bind(
                write
                    .iter()
                    .map(|m| m.reporting_interval_minutes)
                    .collect::<Vec<_>>(),
            )
            .bind(now)
            .execute(&mut *conn)
            .await?;
        let written: Vec<&str> = write.iter().map(|m| m.dev_eui.as_str()).collect();
        crate::storage::lifecycle::postgres::open_installations(conn, &written, now).await?;
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;

    fn new(dev_eui: &str, serial: &str) -> NewMeter {
        NewMeter {
            dev_eui: dev_eui.into(),
            serial: serial.into(),
            body_number: 1,
            user_id: "u".into(),
            application_id: "a".into(),
            region_id: "north".into(),
            usage_type: "residential".into(),
            mode: "credit".into(),
            production_date: NaiveDate::from_ymd_opt(2026, 1, 15).expect("date"),
            reporting_interval_minutes: 1440,
        }
    }

    fn registered(id: i64, n: &NewMeter) -> Meter {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        Meter::registered(id, n, at)
    }

    #[test]
    fn each_meter_of_a_batch_is_new_changed_unchanged_or_a_conflict() {
        let same = new("00000000000000a1", "11");
        let moved = NewMeter {
            region_id: "south".into(),
            ..new("00000000000000a2", "12")
        };
        let thief = new("00000000000000a3", "11");
        let fresh = new("00000000000000a4", "14");
        let known = [
            registered(1, &same),
            registered(2, &new("00000000000000a2", "12")),
        ];
        let batch = [same, moved, thief, fresh];
        let outcomes = decide_all(&batch, &known);
        assert_eq!(
            outcomes,
            [
                Ok(Registered::Unchanged),
                Ok(Registered::Updated),
                Err("serial 11 is registered to devEui 00000000000000a1".into()),
                Ok(Registered::Inserted),
            ]
        );
        let written: Vec<_> = to_write(&batch, &outcomes)
            .iter()
            .map(|m| m.dev_eui.as_str())
            .collect();
        assert_eq!(written, ["00000000000000a2", "00000000000000a4"]);
        assert_eq!(regions(&to_write(&batch, &outcomes)), ["north", "south"]);
    }
}
