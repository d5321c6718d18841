#!/bin/bash
# The billing benchmark's fleet (BENCHMARKS.md, "Billing"): 100 000 meters in 10 regions, each
# with a daily reading at UTC midnight for the 400 days before today (40 million readings),
# written by PostgreSQL itself in 20 statements of 20 days. The database must be migrated.
set -e
DB=${1:?a postgres:// URL}
start=$(date +%s)
psql -q -v ON_ERROR_STOP=1 "$DB" <<'SQL'
INSERT INTO regions (id, name, created_at) SELECT 'r' || r, 'r' || r, now() FROM generate_series(0, 9) r;
INSERT INTO meters (dev_eui, serial, body_number, user_id, application_id, region_id, usage_type, mode,
  production_date, status, reporting_interval_minutes, created_at, updated_at)
SELECT lpad(to_hex(n), 16, '0'), lpad(n::text, 14, '0'), n, 'user-' || n, '3f2d8b9e-6c1a-4d7e-9b52-7a0e4c1f8d23',
  'r' || (n % 10), (ARRAY['residential','commercial'])[1 + n % 2], 'credit', DATE '2025-01-01', 'active', 1440, now(), now()
FROM generate_series(1, 100000) n;
SQL
for lo in $(seq 0 20 380); do
  psql -q -v ON_ERROR_STOP=1 "$DB" -c "INSERT INTO readings (meter_id, reading_time, received_at,
    gas_volume_litres, valve, door, battery_millivolts, battery_percent, flags, f_cnt)
    SELECT m.id, date_trunc('day', now()) - d * interval '1 day',
      date_trunc('day', now()) - d * interval '1 day' + interval '5 minutes',
      1000000 + (400 - d) * (100 + m.id % 400), 1, 0, 3600, 90, 0, 400 - d
    FROM generate_series($lo, $((lo + 19))) d CROSS JOIN meters m"
  echo "days $lo-$((lo + 19)) done at $(( $(date +%s) - start )) s"
done
psql -q "$DB" -c "ANALYZE"
echo "seeded in $(( $(date +%s) - start )) s"
