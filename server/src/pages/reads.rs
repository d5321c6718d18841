//! The pages' reads through the API's response cache: the same [`crate::cache::ResponseCache`]
//! with the same invalidation (a write announces the tags it touches — a meter, a region, or
//! anything at all — and every entry read under one of them stops being served), so a page
//! costs what the API's answers cost once read, at any fleet size.
//!
//! What is cached is the data a page shows (JSON of the store's rows, under keys starting with
//! `page|`), never the HTML: a page also shows who is signed in, what their role allows and
//! their session's CSRF token. A request with `Cache-Control: no-cache` reads around the cache,
//! as the API's do; the answer's `X-Cache` says `hit` (every read from the cache), `miss` or
//! `bypass`.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::error::Problem;
use crate::cache::Tag;

/// What a cached read computes on a miss: the value, the tags whose writes change it, and the
/// application time after which it may differ without any write (a meter falling silent).
pub(crate) struct Fresh<T> {
    /// The value.
    pub value: T,
    /// Writes to these change it.
    pub tags: Vec<Tag>,
    /// It changes by itself at this time.
    pub valid_until: Option<DateTime<Utc>>,
}

impl<T> Fresh<T> {
    /// A value under `tags`, good until written.
    pub fn new(value: T, tags: Vec<Tag>) -> Fresh<T> {
        Fresh {
            value,
            tags,
            valid_until: None,
        }
    }

    /// The same, good until `until` at the latest.
    pub fn until(mut self, until: Option<DateTime<Utc>>) -> Fresh<T> {
        self.valid_until = until;
        self
    }
}

/// How one request's reads went, for its `X-Cache` header.
#[derive(Debug, Default)]
pub(crate) struct Use {
    /// `Cache-Control: no-cache`: read around the cache.
    pub bypass: bool,
    hits: AtomicU32,
    misses: AtomicU32,
}

impl Use {
    /// Reads of a request that asked (or not) to go around the cache.
    pub fn new(bypass: bool) -> Use {
        Use {
            bypass,
            ..Use::default()
        }
    }

    /// The `X-Cache` value: `None` when the page read nothing through the cache.
    pub fn header(&self) -> Option<&'static str> {
        let (hits, misses) = (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        );
        match (self.bypass, hits, misses) {
            (true, _, _) => Some("bypass"),
            (false, 0, 0) => None,
            (false, _, 0) => Some("hit"),
            (false, _, _) => Some("miss"),
        }
    }
}

/// The value cached under `key` if it is still good, else `compute`'s (cached for the next
/// request unless this one bypasses the cache).
pub(crate) async fn cached<T, F, Fut>(
    ctx: &super::Ctx<'_>,
    key: String,
    compute: F,
) -> Result<T, Problem>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Fresh<T>, Problem>>,
{
    let cache = ctx.state.changes.cache();
    let key = format!("page|{key}");
    if !ctx.reads.bypass
        && let Some(bytes) = cache.get(&key, ctx.state.now())
        // An entry that no longer reads as `T` is only recomputed.
        && let Ok(value) = serde_json::from_slice(&bytes)
    {
        ctx.reads.hits.fetch_add(1, Ordering::Relaxed);
        return Ok(value);
    }
    // Read before the store: a write stamped after this is not mistaken for one seen.
    let generation = cache.generation();
    let fresh = compute().await?;
    if !ctx.reads.bypass {
        ctx.reads.misses.fetch_add(1, Ordering::Relaxed);
        if let Ok(bytes) = serde_json::to_vec(&fresh.value) {
            cache.insert(key, bytes.into(), fresh.tags, generation, fresh.valid_until);
        }
    }
    Ok(fresh.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_says_how_the_reads_went() {
        let u = Use::new(false);
        assert_eq!(u.header(), None);
        u.hits.fetch_add(2, Ordering::Relaxed);
        assert_eq!(u.header(), Some("hit"));
        u.misses.fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            u.header(),
            Some("miss"),
            "one read from the store is a miss"
        );
        let b = Use::new(true);
        assert_eq!(b.header(), Some("bypass"));
    }
}
