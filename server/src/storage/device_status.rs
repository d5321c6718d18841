//! The latest status each meter reported through ChirpStack's `status` event (its answer to a
//! DevStatusReq): what powers it and the demodulation margin of the request at the meter.

use chrono::{DateTime, Utc};

/// What powers a meter, as its status report says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Power {
    /// A battery charged this many percent (0 to 100).
    Battery(f32),
    /// External (mains) power.
    External,
    /// The meter cannot measure its battery.
    Unknown,
}

impl Power {
    /// The `power_source` column.
    fn source(self) -> &'static str {
        match self {
            Power::Battery(_) => "battery",
            Power::External => "external",
            Power::Unknown => "unknown",
        }
    }

    /// The `battery_percent` column.
    fn percent(self) -> Option<f32> {
        match self {
            Power::Battery(p) => Some(p),
            Power::External | Power::Unknown => None,
        }
    }

    /// The power a row describes; `None` for a combination the table's checks refuse.
    fn from_columns(source: &str, percent: Option<f32>) -> Option<Power> {
        match (source, percent) {
            ("battery", Some(p)) => Some(Power::Battery(p)),
            ("external", None) => Some(Power::External),
            ("unknown", None) => Some(Power::Unknown),
            _ => None,
        }
    }
}

/// A meter's status report.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatus {
    /// The meter.
    pub meter_id: i64,
    /// What powers it.
    pub power: Power,
    /// Demodulation margin of the status request at the meter, dB.
    pub margin_db: i32,
    /// When the uplink carrying the report arrived.
    pub received_at: DateTime<Utc>,
}

/// The latest report of each meter among `reports` (a batch may hold several of one meter, and
/// one statement may not update a row twice).
pub(crate) fn latest_per_meter<'a>(
    reports: impl IntoIterator<Item = &'a DeviceStatus>,
) -> Vec<DeviceStatus> {
    let mut by_meter: std::collections::BTreeMap<i64, &DeviceStatus> = Default::default();
    for r in reports {
        by_meter
            .entry(r.meter_id)
            .and_modify(|kept| {
                if r.received_at >= kept.received_at {
                    *kept = r;
                }
            })
            .or_insert(r);
    }
    by_meter.into_values().cloned().collect()
}

/// A row as stored.
#[derive(sqlx::FromRow)]
struct Row {
    meter_id: i64,
    power_source: String,
    battery_percent: Option<f32>,
    margin_db: i32,
    received_at: DateTime<Utc>,
}

impl TryFrom<Row> for DeviceStatus {
    type Error = crate::storage::Error;

    fn try_from(r: Row) -> crate::storage::Result<DeviceStatus> {
        let power = Power::from_columns(&r.power_source, r.battery_percent).ok_or_else(|| {
            sqlx::Error::Decode(
                format!(
                    "device_status of meter {}: power source {:?} with battery {:?}",
                    r.meter_id, r.power_source, r.battery_percent
                )
                .into(),
            )
        })?;
        Ok(DeviceStatus {
            meter_id: r.meter_id,
            power,
            margin_db: r.margin_db,
            received_at: r.received_at,
        })
    }
}

macro_rules! device_status_queries {
    ($db:ty) => {
        use sqlx::QueryBuilder;

        use super::*;
        use crate::storage::Result;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Keeps each meter's latest report: an older one (a late or replayed message) leaves
        /// a newer one in place. `reports` holds at most one per meter.
        pub async fn upsert(conn: &mut Conn, reports: &[DeviceStatus]) -> Result<()> {
            for chunk in reports.chunks(2_000) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO device_status (meter_id, power_source, battery_percent, \
                     margin_db, received_at) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.meter_id)
                        .push_bind(r.power.source())
                        .push_bind(r.power.percent())
                        .push_bind(r.margin_db)
                        .push_bind(r.received_at);
                });
                q.push(
                    " ON CONFLICT (meter_id) DO UPDATE SET \
                     power_source = excluded.power_source, \
                     battery_percent = excluded.battery_percent, \
                     margin_db = excluded.margin_db, \
                     received_at = excluded.received_at \
                     WHERE excluded.received_at >= device_status.received_at",
                );
                q.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// A meter's latest report, if it has sent one.
        pub async fn get(conn: &mut Conn, meter_id: i64) -> Result<Option<DeviceStatus>> {
            let row: Option<Row> = sqlx::query_as(
                "SELECT meter_id, power_source, battery_percent, margin_db, received_at \
                 FROM device_status WHERE meter_id = $1",
            )
            .bind(meter_id)
            .fetch_optional(&mut *conn)
            .await?;
            row.map(DeviceStatus::try_from).transpose()
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    device_status_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    device_status_queries!(sqlx::Postgres);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(meter_id: i64, second: i64, margin_db: i32) -> DeviceStatus {
        DeviceStatus {
            meter_id,
            power: Power::Battery(50.0),
            margin_db,
            received_at: DateTime::from_timestamp(1_780_000_000 + second, 0).expect("a time"),
        }
    }

    #[test]
    fn the_latest_report_of_each_meter_is_kept_in_any_order() {
        let reports = [
            report(1, 20, 5),
            report(2, 10, 7),
            report(1, 30, 9),
            report(1, 25, 3),
        ];
        let kept = latest_per_meter(&reports);
        assert_eq!(kept, vec![report(1, 30, 9), report(2, 10, 7)]);
    }

    #[test]
    fn columns_round_trip_and_contradictions_are_refused() {
        for power in [Power::Battery(88.2), Power::External, Power::Unknown] {
            assert_eq!(
                Power::from_columns(power.source(), power.percent()),
                Some(power)
            );
        }
        assert_eq!(Power::from_columns("battery", None), None);
        assert_eq!(Power::from_columns("external", Some(10.0)), None);
        assert_eq!(Power::from_columns("solar", None), None);
    }
}
