//! The commit reader: polls the database for this run's committed events and times each one
//! (see `progress` for how a commit is attributed to a poll).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::event::{dedup_id, parse_dedup_id};
use crate::progress::{Arrivals, PublishTimes};

/// Most identities read per query; a poll that fills a page reads on from where it stopped.
const PAGE: usize = 20_000;

/// A running reader.
pub struct CommitReader {
    task: JoinHandle<Result<Arrivals>>,
    stop: oneshot::Sender<()>,
    committed: Arc<AtomicU64>,
}

impl CommitReader {
    /// Starts polling every `interval` for events `0..total` of `run`.
    pub fn start(
        db: Db,
        run: u32,
        total: u64,
        times: Arc<PublishTimes>,
        interval: Duration,
    ) -> CommitReader {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let committed = Arc::new(AtomicU64::new(0));
        let shared = committed.clone();
        let task = tokio::spawn(async move {
            let mut arrivals = Arrivals::new(total);
            let last_id = dedup_id(run, total.saturating_sub(1));
            let mut stopping = false;
            loop {
                let started = Instant::now();
                let mut from = arrivals.seen.low();
                while from < total {
                    let ids = db
                        .committed_ids(&dedup_id(run, from), &last_id, PAGE as i64)
                        .await?;
                    let mut last = None;
                    for id in &ids {
                        if let Some(seq) = parse_dedup_id(run, id) {
                            arrivals.arrive(seq, started, &times);
                            last = Some(seq);
                        }
                    }
                    match last {
                        Some(seq) if ids.len() == PAGE => from = seq + 1,
                        _ => break,
                    }
                }
                shared.store(arrivals.seen.count(), Ordering::Relaxed);
                if arrivals.seen.complete() || stopping {
                    return Ok(arrivals);
                }
                // Asked to stop: one more poll, so that nothing committed before the request
                // is missed.
                tokio::select! {
                    _ = tokio::time::sleep_until((started + interval).into()) => {}
                    _ = &mut stopped => stopping = true,
                }
            }
        });
        CommitReader {
            task,
            stop,
            committed,
        }
    }

    /// Events seen committed so far.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// The live count of events seen committed.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// Stops after one last poll; the arrivals.
    pub async fn finish(self) -> Result<Arrivals> {
        let _ = self.stop.send(());
        self.task.await?
    }
}
