//! Self-test results reported by meters.

use chrono::{DateTime, Utc};

/// A self-test result to store (and, read back, a stored one).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct StoredSelfTest {
    /// The meter.
    pub meter_id: i64,
    /// When the run finished, by the meter's clock.
    pub meter_time: DateTime<Utc>,
    /// When meterhub received it.
    pub received_at: DateTime<Utc>,
    /// Test bits of the tests run.
    pub tests_run: i16,
    /// Test bits of the tests failed.
    pub tests_failed: i16,
    /// Battery under load, mV.
    pub battery_loaded_millivolts: i32,
    /// Battery at rest, mV.
    pub battery_rest_millivolts: i32,
    /// Valve travel time, ms.
    pub valve_travel_ms: i32,
    /// Metrology deviation, 0.01 %.
    pub metrology_deviation_centi_percent: i32,
    /// Electronics temperature, 0.01 °C.
    pub internal_temperature_centi_celsius: i32,
}

macro_rules! self_test_queries {
    ($db:ty) => {
        use sqlx::QueryBuilder;

        use super::*;
        use crate::storage::Result;

        type Conn = <$db as sqlx::Database>::Connection;

        /// Stores results; a replayed one (same meter and time) is kept once.
        pub async fn insert(conn: &mut Conn, rows: &[StoredSelfTest]) -> Result<u64> {
            let mut inserted = 0;
            for chunk in rows.chunks(2_000) {
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO self_tests (meter_id, meter_time, received_at, tests_run, \
                     tests_failed, battery_loaded_millivolts, battery_rest_millivolts, \
                     valve_travel_ms, metrology_deviation_centi_percent, \
                     internal_temperature_centi_celsius) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.meter_id)
                        .push_bind(r.meter_time)
                        .push_bind(r.received_at)
                        .push_bind(r.tests_run)
                        .push_bind(r.tests_failed)
                        .push_bind(r.battery_loaded_millivolts)
                        .push_bind(r.battery_rest_millivolts)
                        .push_bind(r.valve_travel_ms)
                        .push_bind(r.metrology_deviation_centi_percent)
                        .push_bind(r.internal_temperature_centi_celsius);
                });
                q.push(" ON CONFLICT (meter_id, meter_time) DO NOTHING");
                inserted += q.build().execute(&mut *conn).await?.rows_affected();
            }
            Ok(inserted)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    self_test_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    self_test_queries!(sqlx::Postgres);
}
