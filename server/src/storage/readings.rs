//! Readings: one row per meter and meter-clock time.

use chrono::{DateTime, Duration, Utc};

/// How far back a meter's clock may date a reading and still be stored.
pub const MAX_READING_AGE: Duration = Duration::days(400);
/// How far ahead of the server's clock a meter's clock may date a reading.
pub const MAX_READING_LEAD: Duration = Duration::days(1);

/// Whether a reading dated `reading_time` may be stored at server time `now`: within
/// [now − 400 days, now + 1 day]. Anything outside is quarantined instead, which also keeps
/// PostgreSQL's DEFAULT partition empty in normal operation.
pub fn within_storage_window(reading_time: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    reading_time >= now - MAX_READING_AGE && reading_time <= now + MAX_READING_LEAD
}

/// A reading to store (and, read back, a stored one).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct StoredReading {
    /// The meter.
    pub meter_id: i64,
    /// The meter's clock when it took the reading, UTC.
    pub reading_time: DateTime<Utc>,
    /// When meterhub received it.
    pub received_at: DateTime<Utc>,
    /// Cumulative gas volume, litres.
    pub gas_volume_litres: Option<i64>,
    /// Cumulative active energy, Wh.
    pub energy_wh: Option<i64>,
    /// Voltage, 0.1 V.
    pub voltage_decivolts: Option<i32>,
    /// Current, mA.
    pub current_milliamps: Option<i64>,
    /// Gas temperature, 0.01 °C.
    pub gas_temperature_centi_celsius: Option<i32>,
    /// Gas pressure, Pa.
    pub gas_pressure_pa: Option<i64>,
    /// Valve wire code.
    pub valve: i16,
    /// Door wire code.
    pub door: i16,
    /// Battery voltage, mV.
    pub battery_millivolts: i32,
    /// Battery charge, %.
    pub battery_percent: i16,
    /// Status bits.
    pub flags: i32,
    /// LoRaWAN uplink frame counter.
    pub f_cnt: Option<i64>,
}

/// The measured values in which two readings of one meter and time differ, by their names
/// in the API; empty when `new` only repeats `stored` (when and in which frame it was
/// received do not count).
pub fn differences(stored: &StoredReading, new: &StoredReading) -> Vec<&'static str> {
    let fields = [
        (
            stored.gas_volume_litres != new.gas_volume_litres,
            "gasVolumeLitres",
        ),
        (stored.energy_wh != new.energy_wh, "energyWh"),
        (
            stored.voltage_decivolts != new.voltage_decivolts,
            "voltageDecivolts",
        ),
        (
            stored.current_milliamps != new.current_milliamps,
            "currentMilliamps",
        ),
        (
            stored.gas_temperature_centi_celsius != new.gas_temperature_centi_celsius,
            "gasTemperatureCentiCelsius",
        ),
        (
            stored.gas_pressure_pa != new.gas_pressure_pa,
            "gasPressurePa",
        ),
        (stored.valve != new.valve, "valve"),
        (stored.door != new.door, "door"),
        (
            stored.battery_millivolts != new.battery_millivolts,
            "batteryMillivolts",
        ),
        (
            stored.battery_percent != new.battery_percent,
            "batteryPercent",
        ),
        (stored.flags != new.flags, "flags"),
    ];
    fields
        .into_iter()
        .filter_map(|(differs, name)| differs.then_some(name))
        .collect()
}

/// A stored reading's time and register (gas, else energy).
pub type Register = (DateTime<Utc>, i64);

/// For each (meter, time) asked: the stored readings with a register just before and just
/// after it.
pub type NeighbourMap =
    std::collections::HashMap<(i64, DateTime<Utc>), (Option<Register>, Option<Register>)>;

/// Stored readings by meter and time.
pub type ByKey = std::collections::HashMap<(i64, DateTime<Utc>), StoredReading>;

/// Columns in insert order.
const COLUMNS: &str = "meter_id, reading_time, received_at, gas_volume_litres, energy_wh, \
     voltage_decivolts, current_milliamps, gas_temperature_centi_celsius, gas_pressure_pa, \
     valve, door, battery_millivolts, battery_percent, flags, f_cnt";
const COLUMN_COUNT: usize = 15;
/// [`COLUMNS`] of a table named `r`.
const KEYED_COLUMNS: &str = "r.meter_id, r.reading_time, r.received_at, r.gas_volume_litres, \
     r.energy_wh, r.voltage_decivolts, r.current_milliamps, r.gas_temperature_centi_celsius, \
     r.gas_pressure_pa, r.valve, r.door, r.battery_millivolts, r.battery_percent, r.flags, \
     r.f_cnt";
/// Rows per INSERT on SQLite, which allows 32 766 binds.
const ROWS_PER_STATEMENT: usize = 32_000 / COLUMN_COUNT;

macro_rules! reading_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::AssertSqlSafe;

        use super::*;
        use crate::storage::Result;

        type Conn = <$db as sqlx::Database>::Connection;

        /// A meter's readings in [from, to), oldest first, at most `limit`.
        pub async fn for_meter(
            conn: &mut Conn,
            meter_id: i64,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            limit: i64,
        ) -> Result<Vec<StoredReading>> {
            let sql = format!(
                "SELECT {COLUMNS} FROM readings WHERE meter_id = $1 AND reading_time >= $2 \
                 AND reading_time < $3 ORDER BY reading_time LIMIT $4"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(meter_id)
                .bind(from)
                .bind(to)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?)
        }

        /// A meter's newest reading (the primary key's index, read backwards).
        pub async fn latest_for_meter(
            conn: &mut Conn,
            meter_id: i64,
        ) -> Result<Option<StoredReading>> {
            let sql = format!(
                "SELECT {COLUMNS} FROM readings WHERE meter_id = $1 \
                 ORDER BY reading_time DESC LIMIT 1"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(meter_id)
                .fetch_optional(&mut *conn)
                .await?)
        }

        /// Number of stored readings (tests and reports).
        pub async fn count(conn: &mut Conn) -> Result<i64> {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM readings")
                .fetch_one(&mut *conn)
                .await?)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    reading_queries!(sqlx::Sqlite);

    /// The stored readings with a register just before and just after `at` by the
    /// meter's clock, as (time, gas or else energy register), through the primary key.
    pub async fn neighbours(
        conn: &mut Conn,
        meter_id: i64,
        at: DateTime<Utc>,
    ) -> Result<(Option<(DateTime<Utc>, i64)>, Option<(DateTime<Utc>, i64)>)> {
        let before: Option<(DateTime<Utc>, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT reading_time, gas_volume_litres, energy_wh FROM readings \
             WHERE meter_id = $1 AND reading_time < $2 \
             AND (gas_volume_litres IS NOT NULL OR energy_wh IS NOT NULL) \
             ORDER BY reading_time DESC LIMIT 1",
        )
        .bind(meter_id)
        .bind(at)
        .fetch_optional(&mut *conn)
        .await?;
        let after: Option<(DateTime<Utc>, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT reading_time, gas_volume_litres, energy_wh FROM readings \
             WHERE meter_id = $1 AND reading_time > $2 \
             AND (gas_volume_litres IS NOT NULL OR energy_wh IS NOT NULL) \
             ORDER BY reading_time LIMIT 1",
        )
        .bind(meter_id)
        .bind(at)
        .fetch_optional(&mut *conn)
        .await?;
        let register = |r: Option<(DateTime<Utc>, Option<i64>, Option<i64>)>| {
            r.and_then(|(t, gas, energy)| gas.or(energy).map(|v| (t, v)))
        };
        Ok((register(before), register(after)))
    }

    /// [`neighbours`] of many (meter, time) keys: one query each (SQLite runs in process, a
    /// statement costs no round trip).
    pub async fn neighbours_of(
        conn: &mut Conn,
        keys: &[(i64, DateTime<Utc>)],
    ) -> Result<NeighbourMap> {
        let mut out = NeighbourMap::new();
        for &(meter_id, at) in keys {
            out.insert((meter_id, at), neighbours(conn, meter_id, at).await?);
        }
        Ok(out)
    }

    /// Stores readings; a reading already stored for the same meter and time is left as it
    /// is (a replay changes nothing). Returns how many rows were new.
    pub async fn insert(conn: &mut Conn, rows: &[StoredReading]) -> Result<u64> {
        let mut inserted = 0;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                "INSERT INTO readings ({COLUMNS}) "
            ));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.meter_id)
                    .push_bind(r.reading_time)
                    .push_bind(r.received_at)
                    .push_bind(r.gas_volume_litres)
                    .push_bind(r.energy_wh)
                    .push_bind(r.voltage_decivolts)
                    .push_bind(r.current_milliamps)
                    .push_bind(r.gas_temperature_centi_celsius)
                    .push_bind(r.gas_pressure_pa)
                    .push_bind(r.valve)
                    .push_bind(r.door)
                    .push_bind(r.battery_millivolts)
                    .push_bind(r.battery_percent)
                    .push_bind(r.flags)
                    .push_bind(r.f_cnt);
            });
            q.push(" ON CONFLICT (meter_id, reading_time) DO NOTHING");
            inserted += q.build().execute(&mut *conn).await?.rows_affected();
        }
        Ok(inserted)
    }

    /// The stored readings at the meters and times of `rows`.
    pub async fn stored(conn: &mut Conn, rows: &[StoredReading]) -> Result<ByKey> {
        let mut out = ByKey::new();
        for chunk in rows.chunks(10_000) {
            // A join, not `(meter_id, reading_time) IN (VALUES …)`: SQLite scans the whole
            // table for the latter, and searches the primary key for each key here.
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "WITH k (meter_id, reading_time) AS (VALUES ",
            );
            let mut list = q.separated(", ");
            for r in chunk {
                list.push("(")
                    .push_bind_unseparated(r.meter_id)
                    .push_unseparated(", ")
                    .push_bind_unseparated(r.reading_time)
                    .push_unseparated(")");
            }
            q.push(format!(
                ") SELECT {KEYED_COLUMNS} FROM k JOIN readings r \
                 ON r.meter_id = k.meter_id AND r.reading_time = k.reading_time"
            ));
            let found: Vec<StoredReading> = q.build_query_as().fetch_all(&mut *conn).await?;
            out.extend(found.into_iter().map(|r| ((r.meter_id, r.reading_time), r)));
        }
        Ok(out)
    }
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    reading_queries!(sqlx::Postgres);

    /// For each (meter, time) key, the stored readings with a register just before and just
    /// after it by the meter's clock, in one statement: two probes of the primary key a key
    /// (read backwards and forwards) inside one round trip.
    pub async fn neighbours_of(
        conn: &mut Conn,
        keys: &[(i64, DateTime<Utc>)],
    ) -> Result<NeighbourMap> {
        if keys.is_empty() {
            return Ok(NeighbourMap::new());
        }
        type Row = (
            i64,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<i64>,
            Option<DateTime<Utc>>,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT k.meter_id, k.at, b.reading_time, b.reg, a.reading_time, a.reg \
             FROM unnest($1::bigint[], $2::timestamptz[]) AS k (meter_id, at) \
             LEFT JOIN LATERAL (SELECT reading_time, COALESCE(gas_volume_litres, energy_wh) AS reg \
               FROM readings WHERE meter_id = k.meter_id AND reading_time < k.at \
               AND (gas_volume_litres IS NOT NULL OR energy_wh IS NOT NULL) \
               ORDER BY reading_time DESC LIMIT 1) b ON true \
             LEFT JOIN LATERAL (SELECT reading_time, COALESCE(gas_volume_litres, energy_wh) AS reg \
               FROM readings WHERE meter_id = k.meter_id AND reading_time > k.at \
               AND (gas_volume_litres IS NOT NULL OR energy_wh IS NOT NULL) \
               ORDER BY reading_time LIMIT 1) a ON true",
        )
        .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        let pair = |t: Option<DateTime<Utc>>, v: Option<i64>| t.zip(v);
        Ok(rows
            .into_iter()
            .map(|(m, at, bt, bv, at2, av)| ((m, at), (pair(bt, bv), pair(at2, av))))
            .collect())
    }

    /// Stores readings; a reading already stored for the same meter and time is left as it
    /// is (a replay changes nothing). Returns how many rows were new.
    ///
    /// One statement whatever the number of rows: the columns travel as arrays, so the text
    /// is prepared once per connection.
    pub async fn insert(conn: &mut Conn, rows: &[StoredReading]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        fn column<T>(rows: &[StoredReading], f: impl Fn(&StoredReading) -> T) -> Vec<T> {
            rows.iter().map(f).collect()
        }
        let sql = format!(
            "INSERT INTO readings ({COLUMNS}) SELECT * FROM unnest($1::bigint[], \
             $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::integer[], \
             $7::bigint[], $8::integer[], $9::bigint[], $10::smallint[], $11::smallint[], \
             $12::integer[], $13::smallint[], $14::integer[], $15::bigint[]) \
             ON CONFLICT (meter_id, reading_time) DO NOTHING"
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(column(rows, |r| r.meter_id))
            .bind(column(rows, |r| r.reading_time))
            .bind(column(rows, |r| r.received_at))
            .bind(column(rows, |r| r.gas_volume_litres))
            .bind(column(rows, |r| r.energy_wh))
            .bind(column(rows, |r| r.voltage_decivolts))
            .bind(column(rows, |r| r.current_milliamps))
            .bind(column(rows, |r| r.gas_temperature_centi_celsius))
            .bind(column(rows, |r| r.gas_pressure_pa))
            .bind(column(rows, |r| r.valve))
            .bind(column(rows, |r| r.door))
            .bind(column(rows, |r| r.battery_millivolts))
            .bind(column(rows, |r| r.battery_percent))
            .bind(column(rows, |r| r.flags))
            .bind(column(rows, |r| r.f_cnt))
            .execute(&mut *conn)
            .await?
            .rows_affected())
    }

    /// The stored readings at the meters and times of `rows`.
    pub async fn stored(conn: &mut Conn, rows: &[StoredReading]) -> Result<ByKey> {
        let sql = format!(
            "SELECT {KEYED_COLUMNS} FROM unnest($1::bigint[], $2::timestamptz[]) \
             AS k (meter_id, reading_time) JOIN readings r \
             ON r.meter_id = k.meter_id AND r.reading_time = k.reading_time"
        );
        let found: Vec<StoredReading> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(rows.iter().map(|r| r.meter_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.reading_time).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
        Ok(found
            .into_iter()
            .map(|r| ((r.meter_id, r.reading_time), r))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(litres: i64) -> StoredReading {
        let at = DateTime::parse_from_rfc3339("2026-07-23T00:00:00Z")
            .expect("valid")
            .to_utc();
        StoredReading {
            meter_id: 1,
            reading_time: at,
            received_at: at,
            gas_volume_litres: Some(litres),
            energy_wh: None,
            voltage_decivolts: None,
            current_milliamps: None,
            gas_temperature_centi_celsius: Some(1_250),
            gas_pressure_pa: Some(102_300),
            valve: 1,
            door: 0,
            battery_millivolts: 3_600,
            battery_percent: 90,
            flags: 0,
            f_cnt: Some(1),
        }
    }

    #[test]
    fn a_repeat_received_later_in_another_frame_is_no_difference() {
        let stored = reading(1_000);
        let mut repeat = reading(1_000);
        repeat.received_at += Duration::hours(2);
        repeat.f_cnt = Some(7);
        assert!(differences(&stored, &repeat).is_empty());
        let mut other = reading(1_234);
        other.valve = 2;
        assert_eq!(differences(&stored, &other), ["gasVolumeLitres", "valve"]);
    }

    #[test]
    fn storage_window_is_400_days_back_and_one_day_ahead() {
        let now = DateTime::parse_from_rfc3339("2026-07-23T00:00:00Z")
            .expect("valid")
            .to_utc();
        assert!(within_storage_window(now, now));
        assert!(within_storage_window(now - Duration::days(400), now));
        assert!(!within_storage_window(
            now - Duration::days(400) - Duration::seconds(1),
            now
        ));
        assert!(within_storage_window(now + Duration::days(1), now));
        assert!(!within_storage_window(
            now + Duration::days(1) + Duration::seconds(1),
            now
        ));
    }
}
