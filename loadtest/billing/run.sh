#!/bin/bash
# The billing benchmark (BENCHMARKS.md, "Billing"), from the workspace root, on a database
# seeded by seed.sh, with the release build: `meterhub serve` closes the fleet's day, week
# and month (timed), then measure.py measures the API. Billing in UTC, so that the daily
# readings fall on the boundaries.
set -e
DB=${1:?a postgres:// URL}
BIN=./target/release/meterhub
export METERHUB_DATABASE__URL=$DB METERHUB_MQTT__URL=mqtt://127.0.0.1:18851 \
  METERHUB_HTTP__BIND=127.0.0.1:18080 METERHUB_UTILITY__TIME_ZONE=UTC RUST_LOG=warn
mkdir -p /tmp/billbench && cp tests/mosquitto.conf /tmp/billbench/mosquitto.conf
echo "listener 18851 127.0.0.1" >> /tmp/billbench/mosquitto.conf
mosquitto -c /tmp/billbench/mosquitto.conf > /tmp/billbench/mosquitto.log 2>&1 & BROKER=$!
KEY=$($BIN keys create --name "bench-$$" --role viewer | awk '$1 == "secret" { print $2 }')
# Every run closes from scratch.
psql -q "$DB" -c "TRUNCATE billing_revisions, billing_periods, billing_late_readings"
$BIN serve > /tmp/billbench/serve.log 2>&1 & SERVER=$!
start=$(date +%s.%N)
count() { psql -At "$DB" -c "SELECT count(*) FROM billing_periods $1"; }
until [ "$(count "WHERE kind = 'month'")" = 100000 ]; do sleep 0.5; done
echo "the fleet's month closed in $(echo "$(date +%s.%N) - $start" | bc) s"
until [ "$(count)" = 300000 ]; do sleep 0.5; done
echo "its day, week and month (300 000 rows) in $(echo "$(date +%s.%N) - $start" | bc) s"
psql -At "$DB" -c "SELECT kind, first_day, count(*) FROM billing_periods GROUP BY 1, 2 ORDER BY 1"
MONTH=$(psql -At "$DB" -c "SELECT to_char(first_day, 'YYYY-MM') FROM billing_periods WHERE kind = 'month' LIMIT 1")
FROM=$(date -u -d "$MONTH-01 - 11 months" +%F); TO=$(date -u -d "$MONTH-01 + 1 month" +%F)
python3 loadtest/billing/measure.py 127.0.0.1:18080 "$KEY" $SERVER 100000 "$MONTH" "$FROM" "$TO" r3
# A meter's closed month alone (its row from billing_periods), and the region's.
python3 loadtest/billing/measure.py 127.0.0.1:18080 "$KEY" $SERVER 100000 "$MONTH" "$MONTH-01" "$TO" r3 no-csv
# The month before, not closed: computed from the readings.
BEFORE=$(date -u -d "$MONTH-01 - 1 month" +%Y-%m)
python3 loadtest/billing/measure.py 127.0.0.1:18080 "$KEY" $SERVER 100000 "$BEFORE" "$FROM" "$TO" r3 csv-only
kill $SERVER $BROKER
wait || true
