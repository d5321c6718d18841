//! Billing reads: only the register columns of the readings a consumption figure needs,
//! through the readings' primary key (meter, time).

use chrono::{DateTime, Utc};

use super::{Result, Store};

/// A reading's cumulative registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct RegisterRow {
    /// The meter.
    pub meter_id: i64,
    /// The meter's clock when it took the reading, UTC.
    pub reading_time: DateTime<Utc>,
    /// Cumulative gas volume, litres.
    pub gas_volume_litres: Option<i64>,
    /// Cumulative active energy, Wh.
    pub energy_wh: Option<i64>,
}

macro_rules! billing_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};

        use super::*;

        type Conn = <$db as sqlx::Database>::Connection;

        /// A meter's registers in [from, to], oldest first.
        pub async fn registers(
            conn: &mut Conn,
            meter_id: i64,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<RegisterRow>> {
            Ok(sqlx::query_as(
                "SELECT meter_id, reading_time, gas_volume_litres, energy_wh FROM readings \
                 WHERE meter_id = $1 AND reading_time >= $2 AND reading_time <= $3 \
                 ORDER BY reading_time",
            )
            .bind(meter_id)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await?)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    billing_queries!(sqlx::Sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    billing_queries!(sqlx::Postgres);
}

impl Store {
    /// A meter's registers read in [from, to], oldest first.
    pub async fn registers(
        &self,
        meter_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RegisterRow>> {
        on_reader!(self, |c, q| q::registers(c, meter_id, from, to).await, self)
    }
}
