"""The billing benchmark (BENCHMARKS.md, "Billing"): one meter's 12 monthly rows uncached (mean,
p50, p99), a region's monthly totals, and the fleet's monthly CSV export (time, size, rows) with
the server's RSS sampled every 50 ms while it streams.

Usage: measure.py HOST:PORT KEY SERVER_PID METERS MONTH FROM TO REGION [csv-only|no-csv]"""
import http.client, json, os, random, sys, threading, time

host, port = sys.argv[1].split(":")
key, pid, meters, month = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
frm, to = sys.argv[6], sys.argv[7]   # the 12 months [frm, to)
region = sys.argv[8]
mode = sys.argv[9] if len(sys.argv) > 9 else ""
csv_only, no_csv = mode == "csv-only", mode == "no-csv"

def conn():
    return http.client.HTTPConnection(host, int(port), timeout=600)

def get(c, path, headers=None):
    h = {"Authorization": f"Bearer {key}", "Cache-Control": "no-cache"}
    h.update(headers or {})
    t = time.perf_counter()
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    dt = time.perf_counter() - t
    assert r.status == 200, (path, r.status, body[:300])
    return dt, body

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

c = conn()
rng = random.Random(7)

def latency():
    def meter_path():
        n = rng.randint(1, meters)
        return f"/api/v1/meters/{n:016x}/consumption?period=month&from={frm}&to={to}"
    for _ in range(50):   # warm-up, unmeasured
        get(c, meter_path())
    times = []
    rows = None
    for _ in range(1000):
        dt, body = get(c, meter_path())
        times.append(dt)
        rows = len(json.loads(body)["items"])
    print(f"meter {frm}..{to} uncached: n=1000 rows={rows} mean={sum(times)/len(times)*1e3:.2f} ms "
          f"p50={pct(times,50)*1e3:.2f} ms p99={pct(times,99)*1e3:.2f} ms max={max(times)*1e3:.2f} ms")

    rt = []
    for _ in range(3):
        dt, body = get(c, f"/api/v1/regions/{region}/consumption?period=month&from={month}-01&to={to}")
        rt.append(dt)
    n_months = len(json.loads(body)["items"])
    print(f"region {region} monthly totals ({n_months} month(s) from {month}): runs={[round(x*1e3) for x in rt]} ms")
    rt = []
    for _ in range(2):
        dt, body = get(c, f"/api/v1/regions/{region}/consumption?period=month&from={frm}&to={to}")
        rt.append(dt)
    print(f"region {region} monthly totals (12 months): runs={[round(x*1e3) for x in rt]} ms")


if not csv_only:
    latency()
if no_csv:
    sys.exit(0)

samples = []
done = threading.Event()
def sample():
    while not done.is_set():
        samples.append(rss_kib())
        time.sleep(0.05)
before = rss_kib()
th = threading.Thread(target=sample); th.start()
c2 = conn()
t = time.perf_counter()
c2.request("GET", f"/api/v1/consumption?month={month}", headers={"Authorization": f"Bearer {key}", "Accept": "text/csv"})
r = c2.getresponse()
size = 0; lines = 0
while True:
    chunk = r.read(1 << 16)
    if not chunk:
        break
    size += len(chunk); lines += chunk.count(b"\n")
dt = time.perf_counter() - t
done.set(); th.join()
print(f"fleet CSV export {month}: {dt:.2f} s, {size/1e6:.1f} MB, {lines-1} rows; "
      f"server RSS before {before/1024:.0f} MiB, during min {min(samples)/1024:.0f} / max {max(samples)/1024:.0f} MiB "
      f"({len(samples)} samples), after {rss_kib()/1024:.0f} MiB")
