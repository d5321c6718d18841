//! The registry as the pipeline sees it: meters by DevEUI, cached for a short while so that a
//! batch costs at most one lookup, and a re-registration is seen within a minute.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::storage::meters::Meter;
use crate::storage::{Result, Store};

/// How long a looked-up meter is trusted.
const TTL: Duration = Duration::from_secs(60);

/// Meters by DevEUI.
#[derive(Debug, Default)]
pub struct RegistryCache {
    meters: HashMap<String, (Meter, Instant)>,
    /// When expired entries were last dropped.
    pruned_at: Option<Instant>,
}

impl RegistryCache {
    /// The registered meters among `dev_euis`, from the cache or, for the rest, one query.
    pub async fn resolve(
        &mut self,
        store: &Store,
        dev_euis: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, Meter>> {
        let now = Instant::now();
        self.prune(now);
        let mut found = HashMap::new();
        let mut missing = HashSet::new();
        for d in dev_euis {
            match self.meters.get(&d) {
                Some((m, at)) if now.duration_since(*at) < TTL => {
                    found.insert(d, m.clone());
                }
                _ => {
                    missing.insert(d);
                }
            }
        }
        if !missing.is_empty() {
            let missing: Vec<String> = missing.into_iter().collect();
            for m in store.meters_by_dev_euis(&missing).await? {
                self.meters.insert(m.dev_eui.clone(), (m.clone(), now));
                found.insert(m.dev_eui.clone(), m);
            }
        }
        Ok(found)
    }

    /// Notes that a committed batch heard meter `dev_eui` at `at`, as the store's link state
    /// now says: a cached entry stays as old as its lookup, but its `last_seen_at` moves
    /// forward, so that a meter's next reading within the minute is not taken for its first
    /// after a silence (which would note it as a late reading for the billing scheduler).
    pub fn heard(&mut self, dev_eui: &str, at: chrono::DateTime<chrono::Utc>) {
        if let Some((m, _)) = self.meters.get_mut(dev_eui)
            && m.last_seen_at.is_none_or(|seen| seen < at)
        {
            m.last_seen_at = Some(at);
        }
    }

    /// Drops the entries past their time, once per [`TTL`]: without it the cache would keep
    /// every meter ever heard (a large fleet's whole registry), though only those heard in
    /// the last minute can be used.
    fn prune(&mut self, now: Instant) {
        if self
            .pruned_at
            .is_some_and(|at| now.duration_since(at) < TTL)
        {
            return;
        }
        self.meters
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < TTL);
        self.pruned_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::meters::NewMeter;

    fn meter(dev_eui: &str) -> Meter {
        let new = NewMeter {
            dev_eui: dev_eui.to_owned(),
            serial: "12260100000018".to_owned(),
            body_number: 1,
            user_id: "u".to_owned(),
            application_id: "a".to_owned(),
            region_id: "north".to_owned(),
            usage_type: "residential".to_owned(),
            mode: "credit".to_owned(),
            production_date: chrono::NaiveDate::default(),
            reporting_interval_minutes: 1_440,
        };
        Meter::registered(1, &new, chrono::DateTime::default())
    }

    #[test]
    fn a_committed_uplink_moves_the_cached_last_seen_forward_only() {
        let now = Instant::now();
        let mut c = RegistryCache::default();
        c.meters.insert("m".into(), (meter("m"), now));
        let t = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        c.heard("m", t);
        assert_eq!(c.meters["m"].0.last_seen_at, Some(t));
        c.heard("m", t - chrono::Duration::hours(1));
        assert_eq!(c.meters["m"].0.last_seen_at, Some(t), "never back");
        c.heard("unknown", t);
        assert_eq!(c.meters.len(), 1, "nothing added");
    }

    #[test]
    fn expired_entries_are_dropped_once_a_minute() {
        let start = Instant::now();
        let mut c = RegistryCache::default();
        c.meters.insert("old".into(), (meter("old"), start));
        c.prune(start);
        assert_eq!(c.meters.len(), 1, "a fresh entry stays");
        let later = start + TTL / 2;
        c.meters.insert("new".into(), (meter("new"), later));
        // Within a minute of the last pruning nothing is scanned.
        c.prune(start + TTL - Duration::from_secs(1));
        assert_eq!(c.meters.len(), 2);
        c.prune(start + TTL + Duration::from_secs(1));
        assert!(!c.meters.contains_key("old"), "past its time");
        assert!(c.meters.contains_key("new"), "still within its time");
    }
}
