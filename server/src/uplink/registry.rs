//! The registry as the pipeline sees it: meters by DevEUI, cached for a short while so that a
//! batch costs at most one lookup, and a re-registration is seen within a minute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::storage::meters::Meter;
use crate::storage::{Result, Store};

/// How long a looked-up meter is trusted.
const TTL: Duration = Duration::from_secs(60);

/// Meters by DevEUI.
#[derive(Debug, Default)]
pub struct RegistryCache {
    meters: HashMap<String, (Meter, Instant)>,
}

impl RegistryCache {
    /// The registered meters among `dev_euis`, from the cache or, for the rest, one query.
    pub async fn resolve(
        &mut self,
        store: &Store,
        dev_euis: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, Meter>> {
        let now = Instant::now();
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for d in dev_euis {
            match self.meters.get(&d) {
                Some((m, at)) if now.duration_since(*at) < TTL => {
                    found.insert(d, m.clone());
                }
                _ if !found.contains_key(&d) && !missing.contains(&d) => missing.push(d),
                _ => {}
            }
        }
        if !missing.is_empty() {
            for m in store.meters_by_dev_euis(&missing).await? {
                self.meters.insert(m.dev_eui.clone(), (m.clone(), now));
                found.insert(m.dev_eui.clone(), m);
            }
        }
        Ok(found)
    }
}
