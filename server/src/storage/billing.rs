//! Billing reads: only the register columns of the readings a consumption figure needs,
//! through the readings' primary key (meter, time): one meter's, or many meters' streamed from
//! one query, meter after meter.

use std::future::Future;

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

/// A meter as a billing export names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledMeter {
    /// meterhub's id.
    pub id: i64,
    /// LoRaWAN DevEUI.
    pub dev_eui: String,
    /// Serial number.
    pub serial: String,
    /// Region id.
    pub region_id: String,
    /// Usage type.
    pub usage_type: String,
}

/// One meter and its registers read in a time range, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterRegisters {
    /// The meter.
    pub meter: BilledMeter,
    /// Its registers (none when it has no reading in the range).
    pub registers: Vec<RegisterRow>,
}

/// Which meters a scan reads, and the time range of their registers.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    /// Only this region's meters; every meter when `None`.
    pub region: Option<&'a str>,
    /// Meters with an id above this.
    pub after_id: i64,
    /// At most this many meters.
    pub limit: i64,
    /// Registers read at or after this instant …
    pub from: DateTime<Utc>,
    /// … and at or before this one.
    pub to: DateTime<Utc>,
}

/// One row of a scan: a meter, and one of its readings when it has any in the range.
#[derive(Debug, sqlx::FromRow)]
struct ScanRow {
    id: i64,
    dev_eui: String,
    serial: String,
    region_id: String,
    usage_type: String,
    reading_time: Option<DateTime<Utc>>,
    gas_volume_litres: Option<i64>,
    energy_wh: Option<i64>,
}

/// The meters of a scan, in id order: the whole fleet through the primary key, a region's
/// through `meters_region`.
macro_rules! scan_meters {
    (all) => {
        "SELECT id, dev_eui, serial, region_id, usage_type FROM meters \
         WHERE id > $1 ORDER BY id LIMIT $2"
    };
    (region) => {
        "SELECT id, dev_eui, serial, region_id, usage_type FROM meters \
         WHERE region_id = $5 AND id > $1 ORDER BY id LIMIT $2"
    };
}

/// SQLite joins each meter to its readings through the readings' primary key.
macro_rules! scan_sqlite {
    ($meters:expr) => {
        concat!(
            "SELECT m.id, m.dev_eui, m.serial, m.region_id, m.usage_type, r.reading_time, \
             r.gas_volume_litres, r.energy_wh FROM (",
            $meters,
            ") m LEFT JOIN readings r ON r.meter_id = m.id \
             AND r.reading_time >= $3 AND r.reading_time <= $4 \
             ORDER BY m.id, r.reading_time"
        )
    };
}

/// PostgreSQL: a lateral subquery per meter (kept apart by `OFFSET 0`) so that each meter's
/// readings are found through the primary key, never by scanning a month's partition, and
/// the rows come meter after meter as the cursor is read, with no sort of the whole run (a
/// meter's readings are put in time order as they are grouped).
macro_rules! scan_postgres {
    ($meters:expr) => {
        concat!(
            "SELECT m.id, m.dev_eui, m.serial, m.region_id, m.usage_type, r.reading_time, \
             r.gas_volume_litres, r.energy_wh FROM (",
            $meters,
            ") m LEFT JOIN LATERAL (SELECT reading_time, gas_volume_litres, energy_wh \
             FROM readings WHERE meter_id = m.id AND reading_time >= $3 AND reading_time <= $4 \
             ORDER BY reading_time OFFSET 0) r ON true \
             ORDER BY m.id"
        )
    };
}

macro_rules! billing_queries {
    ($db:ty, $scan:ident) => {
        use chrono::{DateTime, Utc};
        use futures_util::TryStreamExt;

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

        /// The meters of a scan without their readings, in id order.
        pub async fn meters(
            conn: &mut Conn,
            region: Option<&str>,
            after_id: i64,
            limit: i64,
        ) -> Result<Vec<(i64, String, String, String, String)>> {
            let query = match region {
                None => sqlx::query_as(
                    "SELECT id, dev_eui, serial, region_id, usage_type FROM meters \
                     WHERE id > $1 ORDER BY id LIMIT $2",
                ),
                Some(_) => sqlx::query_as(
                    "SELECT id, dev_eui, serial, region_id, usage_type FROM meters \
                     WHERE region_id = $3 AND id > $1 ORDER BY id LIMIT $2",
                ),
            };
            let query = query.bind(after_id).bind(limit);
            let query = match region {
                Some(r) => query.bind(r),
                None => query,
            };
            Ok(query.fetch_all(&mut *conn).await?)
        }

        /// The meters of `scan` with their registers, one meter at a time to `each`, read
        /// from one cursor; stops when `each` answers `false`. Returns the meters passed.
        pub async fn scan<F, Fut>(conn: &mut Conn, scan: &Scan<'_>, mut each: F) -> Result<u64>
        where
            F: FnMut(MeterRegisters) -> Fut,
            Fut: Future<Output = bool>,
        {
            let query = match scan.region {
                None => sqlx::query_as::<_, ScanRow>($scan!(scan_meters!(all))),
                Some(_) => sqlx::query_as::<_, ScanRow>($scan!(scan_meters!(region))),
            };
            let mut query = query
                .bind(scan.after_id)
                .bind(scan.limit)
                .bind(scan.from)
                .bind(scan.to);
            if let Some(region) = scan.region {
                query = query.bind(region);
            }
            let mut rows = query.fetch(&mut *conn);
            let mut current: Option<MeterRegisters> = None;
            let mut meters = 0;
            while let Some(row) = rows.try_next().await? {
                if let Some(mut done) = current.take_if(|c| c.meter.id != row.id) {
                    done.registers.sort_by_key(|r| r.reading_time);
                    meters += 1;
                    if !each(done).await {
                        return Ok(meters);
                    }
                }
                let c = current.get_or_insert_with(|| MeterRegisters {
                    meter: BilledMeter {
                        id: row.id,
                        dev_eui: row.dev_eui,
                        serial: row.serial,
                        region_id: row.region_id,
                        usage_type: row.usage_type,
                    },
                    registers: Vec::new(),
                });
                if let Some(reading_time) = row.reading_time {
                    c.registers.push(RegisterRow {
                        meter_id: row.id,
                        reading_time,
                        gas_volume_litres: row.gas_volume_litres,
                        energy_wh: row.energy_wh,
                    });
                }
            }
            if let Some(mut done) = current {
                done.registers.sort_by_key(|r| r.reading_time);
                meters += 1;
                each(done).await;
            }
            Ok(meters)
        }
    };
}

/// Queries on SQLite.
pub(crate) mod sqlite {
    billing_queries!(sqlx::Sqlite, scan_sqlite);
}

/// Queries on PostgreSQL.
pub(crate) mod postgres {
    billing_queries!(sqlx::Postgres, scan_postgres);
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

    /// The meters of a scan (`region`'s, or every one), ids above `after_id`, at most
    /// `limit`, in id order, without their readings.
    pub async fn billed_meters(
        &self,
        region: Option<&str>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<BilledMeter>> {
        let rows = on_reader!(
            self,
            |c, q| q::meters(c, region, after_id, limit).await,
            self
        )?;
        Ok(rows
            .into_iter()
            .map(|(id, dev_eui, serial, region_id, usage_type)| BilledMeter {
                id,
                dev_eui,
                serial,
                region_id,
                usage_type,
            })
            .collect())
    }

    /// The meters of `scan` with their registers in its range, oldest first, one meter at a
    /// time to `each` as the rows arrive from one query (never all in memory); stops early
    /// when `each` answers `false`. Returns how many meters were passed.
    pub async fn scan_registers<F, Fut>(&self, scan: &Scan<'_>, each: F) -> Result<u64>
    where
        F: FnMut(MeterRegisters) -> Fut,
        Fut: Future<Output = bool>,
    {
        on_reader!(self, |c, q| q::scan(c, scan, each).await, self)
    }
}
