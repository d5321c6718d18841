//! The REST API's response cache: serialized responses in an LRU, kept coherent by
//! generations rather than by their lifetime.
//!
//! Every write that can change a response bumps a global counter and stamps the counter's new
//! value on each *tag* it touches: the meters, their regions, and [`Tag::All`] (every write
//! changes some fleet-wide list). A reader takes the counter *before* its query runs and stores
//! its response with that value and the tags the response depends on. An entry is current only
//! while none of its tags was stamped after it was read, so a write that commits while a query
//! runs leaves that query's response already stale: it can never be served as current.
//!
//! Writers mark their tags "in flight" before their commit becomes visible and bump them
//! after it, before they answer (or acknowledge to the broker): an entry is not served while
//! a write on its tags is in flight, so no cached response is older than a read around the
//! cache before it, and a read that starts after a write was answered sees that write.
//! Other instances learn of writes through PostgreSQL NOTIFY (see [`Changes`]).
//!
//! One std mutex guards the LRU, the counter and the stamps together: every operation is a few
//! hash-map steps and never crosses an `.await`, and taking them together is what makes the
//! check-then-serve and the bump atomic with respect to each other.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lru::LruCache;
use uuid::Uuid;

use crate::storage::Store;

/// What a response depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tag {
    /// Anything at all (fleet-wide lists, counts).
    All,
    /// One region's meters and their data.
    Region(String),
    /// One meter and its data.
    Meter(i64),
}

/// A cached response.
#[derive(Debug, Clone)]
struct Entry {
    body: Arc<[u8]>,
    tags: Vec<Tag>,
    read_generation: u64,
    inserted: Instant,
    /// The application time after which the response may differ without any write (a meter
    /// becoming overdue); `None` when only writes change it.
    valid_until: Option<DateTime<Utc>>,
}

struct Inner {
    lru: LruCache<String, Entry>,
    generation: u64,
    stamps: HashMap<Tag, u64>,
    /// Entries read before this generation are stale whatever their tags.
    floor: u64,
    /// Tags with a write in flight (begun, not yet committed and bumped), with how many:
    /// their entries are not served meanwhile, see [`Changes::begin`].
    writing: HashMap<Tag, u32>,
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Responses served from the cache.
    pub hits: AtomicU64,
    /// Lookups that found nothing current.
    pub misses: AtomicU64,
    /// Entries pushed out to make room.
    pub evictions: AtomicU64,
    /// Generation bumps (local writes and notifications from other instances).
    pub invalidations: AtomicU64,
}

/// The cache: cheap to clone, shared by every request handler and writer of an instance.
#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Mutex<Inner>>,
    ttl: Duration,
    stats: Arc<CacheStats>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// A cache of at most `capacity` responses, each kept at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> ResponseCache {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        ResponseCache {
            inner: Arc::new(Mutex::new(Inner {
                lru: LruCache::new(capacity),
                generation: 0,
                stamps: HashMap::new(),
                floor: 0,
                writing: HashMap::new(),
            })),
            ttl,
            stats: Arc::new(CacheStats::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // serves stale data (every update is a single insert), so a poisoned lock is used.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The response stored under `key`, if it is still current at application time `now`.
    pub fn get(&self, key: &str, now: DateTime<Utc>) -> Option<Arc<[u8]>> {
        let mut inner = self.lock();
        // An entry with a write in flight on one of its tags is left in place but not
        // served: the write may already be visible to a read around the cache.
        let held = inner
            .lru
            .peek(key)
            .is_some_and(|e| e.tags.iter().any(|t| inner.writing.contains_key(t)));
        if held {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let current = inner.lru.peek(key).map(|e| {
            e.inserted.elapsed() < self.ttl
                && e.read_generation >= inner.floor
                && e.valid_until.is_none_or(|t| now < t)
                && e.tags.iter().all(|t| {
                    inner
                        .stamps
                        .get(t)
                        .is_none_or(|stamp| *stamp <= e.read_generation)
                })
        });
        match current {
            Some(true) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                inner.lru.get(key).map(|e| e.body.clone())
            }
            Some(false) => {
                inner.lru.pop(key);
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The generation to stamp on a response whose query starts now.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Stores a response read at `read_generation`, unless a write touching its tags has
    /// been stamped since (then it is already stale, and storing it would only evict a
    /// current entry).
    pub fn insert(
        &self,
        key: String,
        body: Arc<[u8]>,
        tags: Vec<Tag>,
        read_generation: u64,
        valid_until: Option<DateTime<Utc>>,
    ) {
        let mut inner = self.lock();
        let stale = read_generation < inner.floor
            || tags.iter().any(|t| {
                inner
                    .stamps
                    .get(t)
                    .is_some_and(|stamp| *stamp > read_generation)
            });
        if stale {
            return;
        }
        let entry = Entry {
            body,
            tags,
            read_generation,
            inserted: Instant::now(),
            valid_until,
        };
        if let Some((old_key, _)) = inner.lru.push(key.clone(), entry)
            && old_key != key
        {
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks everything depending on `tags` (and every fleet-wide response) as changed.
    pub fn bump(&self, tags: impl IntoIterator<Item = Tag>) {
        let mut inner = self.lock();
        inner.generation += 1;
        let g = inner.generation;
        inner.stamps.insert(Tag::All, g);
        for t in tags {
            inner.stamps.insert(t, g);
        }
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes writes in flight on `tags` (and [`Tag::All`]): their entries are not served until
    /// [`ResponseCache::end_writes`].
    fn begin_writes(&self, tags: impl IntoIterator<Item = Tag>) {
        let mut inner = self.lock();
        for t in tags.into_iter().chain([Tag::All]) {
            *inner.writing.entry(t).or_insert(0) += 1;
        }
    }

    /// Ends the writes begun on `begun` and bumps `changed`, atomically: no read sees the
    /// tags free before they are stamped.
    fn end_writes(&self, begun: &[Tag], changed: impl IntoIterator<Item = Tag>) {
        let mut inner = self.lock();
        inner.generation += 1;
        let g = inner.generation;
        inner.stamps.insert(Tag::All, g);
        for t in changed.into_iter().chain(begun.iter().cloned()) {
            inner.stamps.insert(t, g);
        }
        for t in begun.iter().chain([&Tag::All]) {
            if let Some(n) = inner.writing.get_mut(t) {
                *n -= 1;
                if *n == 0 {
                    inner.writing.remove(t);
                }
            }
        }
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks every response as changed (a notification may have been missed).
    pub fn bump_everything(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.floor = inner.generation;
        inner.lru.clear();
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Responses held.
    pub fn len(&self) -> usize {
        self.lock().lru.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache's series in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let s = &self.stats;
        for (name, help, v) in [
            (
                "meterhub_api_cache_hits_total",
                "API responses served from the cache.",
                &s.hits,
            ),
            (
                "meterhub_api_cache_misses_total",
                "API cache lookups that found nothing current.",
                &s.misses,
            ),
            (
                "meterhub_api_cache_evictions_total",
                "API cache entries evicted to make room.",
                &s.evictions,
            ),
            (
                "meterhub_api_cache_invalidations_total",
                "Generation bumps from writes here and on other instances.",
                &s.invalidations,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let name = "meterhub_api_cache_entries";
        let _ = writeln!(
            out,
            "# HELP {name} Responses held in the API cache.\n# TYPE {name} gauge\n{name} {}",
            self.len()
        );
        out
    }
}

/// The PostgreSQL channel on which instances tell each other what they wrote.
pub const CHANNEL: &str = "meterhub_changes";
/// PostgreSQL refuses NOTIFY payloads of 8 000 bytes or more; chunks stay well below.
const MAX_PAYLOAD: usize = 7_000;
/// Past this many chunks one "everything changed" notification is cheaper for every listener.
const MAX_CHUNKS: usize = 8;

/// What a committed write touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Meter ids.
    pub meters: BTreeSet<i64>,
    /// Region ids.
    pub regions: BTreeSet<String>,
}

impl Touched {
    /// One meter of one region.
    pub fn meter(id: i64, region: &str) -> Touched {
        let mut t = Touched::default();
        t.add(id, region);
        t
    }

    /// Adds a meter and its region.
    pub fn add(&mut self, id: i64, region: &str) {
        self.meters.insert(id);
        self.regions.insert(region.to_owned());
    }

    /// Adds a meter alone, for a write that changes nothing a region's responses show (its
    /// commands).
    pub fn add_meter(&mut self, id: i64) {
        self.meters.insert(id);
    }

    /// The meters `ids`, each alone (see [`Touched::add_meter`]).
    pub fn of_meters(ids: impl IntoIterator<Item = i64>) -> Touched {
        Touched {
            meters: ids.into_iter().collect(),
            regions: BTreeSet::new(),
        }
    }

    /// This and the meters `ids`, each alone (see [`Touched::add_meter`]).
    pub fn and_meters(&self, ids: &[i64]) -> Touched {
        let mut all = self.clone();
        all.meters.extend(ids);
        all
    }

    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.meters.is_empty() && self.regions.is_empty()
    }

    fn tags(&self) -> impl Iterator<Item = Tag> + '_ {
        self.meters
            .iter()
            .map(|m| Tag::Meter(*m))
            .chain(self.regions.iter().map(|r| Tag::Region(r.clone())))
    }
}

/// A region id inside a payload: `%`, `,` and `|` percent-encoded, as a region id may hold
/// any of them and the payload is split on the last two.
fn escape_region(r: &str) -> String {
    let mut out = String::with_capacity(r.len());
    for c in r.chars() {
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape_region`]; `None` for a malformed escape.
fn unescape_region(r: &str) -> Option<String> {
    let mut out = String::with_capacity(r.len());
    let mut rest = r;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "25" => '%',
            "2C" => ',',
            "7C" => '|',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Encodes what was touched as NOTIFY payloads: `SENDER|m:1,2|r:north,south`, each under
/// the size limit, or a single `SENDER|*` when that would take too many.
pub fn encode(sender: Uuid, t: &Touched) -> Vec<String> {
    let head = format!("{sender}|");
    // Region ids are short (at most 64 characters) and few; every chunk carries them all.
    let regions: Vec<String> = t.regions.iter().map(|r| escape_region(r)).collect();
    let region_part = format!("|r:{}", regions.join(","));
    if head.len() + region_part.len() + 16 > MAX_PAYLOAD {
        return vec![format!("{head}*")];
    }
    let mut chunks = Vec::new();
    let mut current = String::new();
    for m in &t.meters {
        let item = m.to_string();
        if head.len() + 2 + current.len() + item.len() + 1 + region_part.len() > MAX_PAYLOAD {
            chunks.push(format!("{head}m:{current}{region_part}"));
            current.clear();
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&item);
    }
    chunks.push(format!("{head}m:{current}{region_part}"));
    if chunks.len() > MAX_CHUNKS {
        return vec![format!("{head}*")];
    }
    chunks
}

/// What a notification asks of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// This instance sent it: already applied.
    Own,
    /// Bump these.
    Touched(Touched),
    /// Bump everything (also for a payload that cannot be read).
    Everything,
}

/// Decodes a payload made by [`encode`].
pub fn decode(me: Uuid, payload: &str) -> Notice {
    let mut parts = payload.split('|');
    let sender = parts.next().and_then(|s| Uuid::parse_str(s).ok());
    if sender == Some(me) {
        return Notice::Own;
    }
    let mut t = Touched::default();
    for part in parts {
        if part == "*" {
            return Notice::Everything;
        } else if let Some(list) = part.strip_prefix("m:") {
            for m in list.split(',').filter(|s| !s.is_empty()) {
                match m.parse() {
                    Ok(id) => {
                        t.meters.insert(id);
                    }
                    Err(_) => return Notice::Everything,
                }
            }
        } else if let Some(list) = part.strip_prefix("r:") {
            for r in list.split(',').filter(|s| !s.is_empty()) {
                match unescape_region(r) {
                    Some(r) => {
                        t.regions.insert(r);
                    }
                    None => return Notice::Everything,
                }
            }
        } else {
            return Notice::Everything;
        }
    }
    if sender.is_none() {
        return Notice::Everything;
    }
    Notice::Touched(t)
}

/// Where writes announce themselves: this instance's cache at once, other instances through
/// PostgreSQL NOTIFY. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Changes {
    cache: ResponseCache,
    store: Store,
    instance: Uuid,
}

impl Changes {
    /// Announces to `cache` and, on PostgreSQL, to the other instances on `store`.
    pub fn new(cache: ResponseCache, store: Store) -> Changes {
        Changes {
            cache,
            store,
            instance: Uuid::new_v4(),
        }
    }

    /// The cache this instance serves from.
    pub fn cache(&self) -> &ResponseCache {
        &self.cache
    }

    /// This instance's id in notifications.
    pub fn instance(&self) -> Uuid {
        self.instance
    }

    /// Begins a write that will touch `touched` (as far as it is known before it): until the
    /// returned [`Pending`] is committed (or dropped), responses depending on it are not
    /// served from this instance's cache.
    ///
    /// A write announced only after its commit leaves a window, between the commit and the
    /// announcement, in which a read around the cache (or any uncached query) already sees
    /// the write while the cache still serves the older answer: a client that compares the
    /// two, or reads twice, sees time go backwards. Short writes that a client waits for
    /// (the API's) begin first and close that window. Writes that learn what they touch
    /// only inside their transaction (ingest, the scheduler) begin once they know, before
    /// their commit (`Store`'s `hold` arguments): the window is closed all the same, and
    /// their responses are held for the commit alone.
    pub fn begin(&self, touched: &Touched) -> Pending<'_> {
        let begun: Vec<Tag> = touched.tags().collect();
        self.cache.begin_writes(begun.iter().cloned());
        Pending {
            changes: self,
            begun,
            done: false,
        }
    }

    /// [`Changes::begin`] for a write that may turn out to touch nothing: then `None`, and
    /// nothing is held.
    pub fn begin_unless_empty(&self, touched: &Touched) -> Option<Pending<'_>> {
        (!touched.is_empty()).then(|| self.begin(touched))
    }

    /// Announces a write whose extent is unknown or large (an import by another process):
    /// every response here and on the other instances is dropped.
    pub async fn everything_changed(&self) {
        self.cache.bump_everything();
        self.notify(vec![format!("{}|*", self.instance)]).await;
    }

    async fn notify(&self, payloads: Vec<String>) {
        let Store::Postgres(pool) = &self.store else {
            return;
        };
        let mut unsent = Vec::new();
        for payload in payloads {
            if let Err(e) = notify(pool, &payload).await {
                tracing::warn!(error = %e, "cannot notify other instances of a write; retrying");
                unsent.push(payload);
            }
        }
        if !unsent.is_empty() {
            tokio::spawn(retry_notify(pool.clone(), unsent));
        }
    }
}

/// A write begun with [`Changes::begin`].
#[must_use = "a pending write hides its responses until it is committed"]
pub struct Pending<'a> {
    changes: &'a Changes,
    begun: Vec<Tag>,
    done: bool,
}

impl Pending<'_> {
    /// Announces the committed write as it was begun.
    pub async fn announce(self) {
        self.committed(&Touched::default()).await;
    }

    /// Announces the committed write: what was begun and anything learnt since (a new
    /// meter's id), here at once and to the other instances. Call after the commit and
    /// before answering. A notification that cannot be sent is never an error for the
    /// writer (its write is committed): it is logged and sent again in the background until
    /// it goes through, as other instances serve the older data until then.
    pub async fn committed(mut self, touched: &Touched) {
        self.done = true;
        self.changes.cache.end_writes(&self.begun, touched.tags());
        let mut all = touched.clone();
        for t in &self.begun {
            match t {
                Tag::Meter(id) => all.add_meter(*id),
                Tag::Region(r) => {
                    all.regions.insert(r.clone());
                }
                Tag::All => {}
            }
        }
        self.changes
            .notify(encode(self.changes.instance, &all))
            .await;
    }
}

impl Drop for Pending<'_> {
    /// A write that failed (or whose handler stopped): the responses are freed, and
    /// bumped in case it committed after all.
    fn drop(&mut self) {
        if !self.done {
            self.changes.cache.end_writes(&self.begun, []);
        }
    }
}

async fn notify(pool: &sqlx::PgPool, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Sends notifications that failed, with backoff, for at most [`RETRY_FOR`] (a bound on
/// what a long outage leaves running; a listener that lost its own connection in it drops
/// everything when it reconnects anyway).
async fn retry_notify(pool: sqlx::PgPool, mut unsent: Vec<String>) {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(100);
    while !unsent.is_empty() && start.elapsed() < RETRY_FOR && !pool.is_closed() {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        let mut still = Vec::new();
        for payload in unsent {
            if notify(&pool, &payload).await.is_err() {
                still.push(payload);
            }
        }
        unsent = still;
    }
    if !unsent.is_empty() {
        tracing::error!(
            notifications = unsent.len(),
            "gave up notifying other instances of a write; they serve older data until their entries expire"
        );
    }
}

/// How long a failed notification is retried.
const RETRY_FOR: Duration = Duration::from_secs(600);

/// Listens for other instances' and processes' writes until `shutdown`.
///
/// On PostgreSQL, through NOTIFY; whenever the connection is lost, notifications may have
/// been missed: everything is bumped. On SQLite, other processes (`meterhub meters import`
/// while this one serves) cannot notify: their commits are seen in `PRAGMA data_version`
/// of this process's writer connection, which changes only for commits by other
/// connections (this process writes through that one connection alone), and everything is
/// bumped.
pub async fn listen(changes: Changes, shutdown: tokio_util::sync::CancellationToken) {
    match &changes.store {
        Store::Postgres(pool) => listen_postgres(&changes, pool, shutdown).await,
        Store::Sqlite { writer, .. } => watch_sqlite(&changes, writer, shutdown).await,
    }
}

/// How often SQLite's `data_version` is read.
const SQLITE_POLL: Duration = Duration::from_secs(1);

async fn watch_sqlite(
    changes: &Changes,
    writer: &sqlx::SqlitePool,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut last: Option<i64> = None;
    loop {
        match sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(writer)
            .await
        {
            Ok(v) => {
                if last.is_some_and(|l| l != v) {
                    tracing::debug!("another process wrote to the database");
                    changes.cache.bump_everything();
                }
                last = Some(v);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read data_version"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SQLITE_POLL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn listen_postgres(
    changes: &Changes,
    pool: &sqlx::PgPool,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Connecting waits up to the pool's ten seconds while the database is away: a stop
        // does not wait for it.
        let connecting = async {
            match sqlx::postgres::PgListener::connect_with(pool).await {
                Ok(mut l) => l.listen(CHANNEL).await.map(|()| l),
                Err(e) => Err(e),
            }
        };
        let listening = tokio::select! {
            l = connecting => l,
            _ = shutdown.cancelled() => return,
        };
        let mut listener = match listening {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other instances' writes");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // Whatever happened before this LISTEN is unknown.
        changes.cache.bump_everything();
        backoff = Duration::from_millis(100);
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = shutdown.cancelled() => return,
            };
            match next {
                Ok(Some(n)) => match decode(changes.instance, n.payload()) {
                    Notice::Own => {}
                    Notice::Touched(t) => changes.cache.bump(t.tags()),
                    Notice::Everything => changes.cache.bump_everything(),
                },
                // The connection was lost; the next call reconnects and re-listens.
                Ok(None) => changes.cache.bump_everything(),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the notification connection");
                    changes.cache.bump_everything();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn body(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn a_write_during_a_query_leaves_its_response_stale() {
        let c = ResponseCache::new(10, Duration::from_secs(60));
        let read = c.generation();
        // The write commits and bumps while the query runs.
        c.bump([Tag::Meter(7)]);
        c.insert("k".into(), body("old"), vec![Tag::Meter(7)], read, None);
        assert!(c.get("k", now()).is_none());
    }

    #[test]
    fn an_entry_is_not_served_while_a_write_on_its_tags_is_in_flight() {
        let c = ResponseCache::new(10, Duration::from_secs(60));
        c.insert("m7".into(), body("old"), vec![Tag::Meter(7)], 0, None);
        c.insert("m8".into(), body("8"), vec![Tag::Meter(8)], 0, None);
        c.insert("all".into(), body("a"), vec![Tag::All], 0, None);
        c.begin_writes([Tag::Meter(7)]);
        // The write may be visible around the cache already.
        assert!(c.get("m7", now()).is_none());
        assert!(c.get("all", now()).is_none());
        assert!(c.get("m8", now()).is_some());
        // A read meanwhile stores what it read, stale once the write ends.
        let read = c.generation();
        c.insert("m7".into(), body("new"), vec![Tag::Meter(7)], read, None);
        c.end_writes(&[Tag::Meter(7)], []);
        assert!(c.get("m7", now()).is_none());
        let read = c.generation();
        c.insert("m7".into(), body("new"), vec![Tag::Meter(7)], read, None);
        assert_eq!(c.get("m7", now()).as_deref(), Some(&b"new"[..]));
        assert!(c.lock().writing.is_empty());
    }

    #[test]
    fn a_write_to_one_meter_keeps_other_meters_cached_but_not_fleet_lists() {
        let c = ResponseCache::new(10, Duration::from_secs(60));
        let g = c.generation();
        c.insert("m1".into(), body("1"), vec![Tag::Meter(1)], g, None);
        c.insert("m2".into(), body("2"), vec![Tag::Meter(2)], g, None);
        c.insert("all".into(), body("a"), vec![Tag::All], g, None);
        c.bump([Tag::Meter(2), Tag::Region("north".into())]);
        assert_eq!(c.get("m1", now()).as_deref(), Some(&b"1"[..]));
        assert!(c.get("m2", now()).is_none());
        assert!(c.get("all", now()).is_none());
        assert_eq!(c.stats().hits.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats().misses.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn entries_expire_by_lifetime_and_by_application_time() {
        let c = ResponseCache::new(10, Duration::ZERO);
        c.insert("k".into(), body("x"), vec![Tag::All], c.generation(), None);
        assert!(c.get("k", now()).is_none());
        let c = ResponseCache::new(10, Duration::from_secs(60));
        let until = now() + chrono::Duration::seconds(10);
        c.insert("k".into(), body("x"), vec![Tag::All], 0, Some(until));
        assert!(c.get("k", now()).is_some());
        assert!(c.get("k", until).is_none());
    }

    #[test]
    fn capacity_evicts_the_least_recently_used_and_counts_it() {
        let c = ResponseCache::new(2, Duration::from_secs(60));
        for k in ["a", "b"] {
            c.insert(k.into(), body(k), vec![Tag::All], 0, None);
        }
        assert!(c.get("a", now()).is_some());
        c.insert("c".into(), body("c"), vec![Tag::All], 0, None);
        assert!(c.get("b", now()).is_none());
        assert!(c.get("a", now()).is_some());
        assert_eq!(c.stats().evictions.load(Ordering::Relaxed), 1);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn notifications_round_trip_in_chunks_under_the_limit() {
        let me = Uuid::new_v4();
        let other = Uuid::new_v4();
        let mut t = Touched::default();
        for id in 0..3_000 {
            t.add(1_000_000 + id, if id % 2 == 0 { "north" } else { "south" });
        }
        let payloads = encode(other, &t);
        assert!(payloads.len() > 1, "{} chunks", payloads.len());
        let mut back = Touched::default();
        for p in &payloads {
            assert!(p.len() < 8_000);
            match decode(me, p) {
                Notice::Touched(x) => {
                    back.meters.extend(x.meters);
                    back.regions.extend(x.regions);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, t);
        assert_eq!(decode(other, &payloads[0]), Notice::Own);
        assert_eq!(decode(me, "garbage"), Notice::Everything);
    }

    #[test]
    fn region_ids_with_separators_survive_a_notification() {
        let mut t = Touched::default();
        for r in ["a,b", "c|d", "100%", "north"] {
            t.add(1, r);
        }
        let payloads = encode(Uuid::new_v4(), &t);
        assert_eq!(payloads.len(), 1);
        assert_eq!(
            decode(Uuid::new_v4(), &payloads[0]),
            Notice::Touched(t),
            "{payloads:?}"
        );
        assert_eq!(
            decode(Uuid::new_v4(), &format!("{}|m:|r:%zz", Uuid::new_v4())),
            Notice::Everything
        );
    }

    #[test]
    fn too_many_meters_become_one_everything_notice() {
        let mut t = Touched::default();
        for id in 0..100_000 {
            t.add(id, "north");
        }
        let payloads = encode(Uuid::new_v4(), &t);
        assert_eq!(payloads.len(), 1);
        assert_eq!(decode(Uuid::new_v4(), &payloads[0]), Notice::Everything);
    }
}
