//! Closed-loop load: `concurrency` connections, each sending its next request as soon as the
//! last is answered, for a fixed time or until the requests run out. Every answer is timed
//! from the write of its request to the last byte of its body; answers other than 2xx are
//! counted as errors, with the first one kept to say why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;

use super::client::{CacheState, Connection};

/// Makes request number `seq` (counted per phase, across connections) into `out` with the
/// random source given; false when there are no more.
pub type MakeRequest = dyn Fn(u64, &mut Rng, &mut Vec<u8>) -> bool + Send + Sync;

/// A small, fast random source (xorshift64*), one per connection.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; any seed gives a usable stream.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What a phase's connections saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Answers received.
    pub requests: u64,
    /// Of those, not 2xx.
    pub errors: u64,
    /// Connections lost or answers that could not be read.
    pub transport_errors: u64,
    /// Answers by `x-cache`: hit, miss, bypass.
    pub cache: [u64; 3],
    /// Response times, microseconds.
    pub latency: Histogram<u64>,
    /// From the start until the last answer.
    pub elapsed: Duration,
    /// The first error: status and the start of its body, or the transport error.
    pub first_error: Option<String>,
    /// The requests ran out before the time did.
    pub exhausted: bool,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            requests: 0,
            errors: 0,
            transport_errors: 0,
            cache: [0; 3],
            latency: new_histogram(),
            elapsed: Duration::ZERO,
            first_error: None,
            exhausted: false,
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.transport_errors += other.transport_errors;
        for (a, b) in self.cache.iter_mut().zip(other.cache) {
            *a += b;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.exhausted |= other.exhausted;
    }

    /// Answers a second.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.requests as f64 / s
        } else {
            0.0
        }
    }

    /// Cache hits.
    pub fn hits(&self) -> u64 {
        self.cache[0]
    }
}

/// Microseconds from 1 µs to 60 s, three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Runs `concurrency` connections to `addr` for `duration` (or until `make` says there are no
/// more requests).
pub async fn run(
    addr: SocketAddr,
    concurrency: u32,
    duration: Duration,
    make: Arc<MakeRequest>,
) -> Result<Outcome> {
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let make = make.clone();
        let seq = seq.clone();
        let mut conn = Connection::open(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::new();
            let mut rng = Rng::new(u64::from(worker) + 1);
            let mut request = Vec::with_capacity(1024);
            while Instant::now() < deadline {
                request.clear();
                let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !make(n, &mut rng, &mut request) {
                    out.exhausted = true;
                    break;
                }
                let sent = Instant::now();
                match conn.send(&request).await {
                    Ok(answer) => {
                        let us = sent.elapsed().as_micros().max(1) as u64;
                        out.latency.saturating_record(us);
                        out.requests += 1;
                        match answer.cache {
                            Some(CacheState::Hit) => out.cache[0] += 1,
                            Some(CacheState::Miss) => out.cache[1] += 1,
                            Some(CacheState::Bypass) => out.cache[2] += 1,
                            None => {}
                        }
                        if !(200..300).contains(&answer.status) {
                            out.errors += 1;
                            if out.first_error.is_none() {
                                let body = String::from_utf8_lossy(conn.body());
                                out.first_error = Some(format!(
                                    "{}: {}",
                                    answer.status,
                                    body.chars().take(300).collect::<String>()
                                ));
                            }
                        }
                    }
                    Err(e) => {
                        out.transport_errors += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(format!("{e:#}"));
                        }
                        // A fresh connection for the rest of the phase, after a pause so that
                        // a server that is gone does not spin this loop.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match Connection::open(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            out
        }));
    }
    let mut total = Outcome::new();
    for t in tasks {
        total.merge(t.await?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_source_stays_in_range_and_spreads() {
        let mut r = Rng::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[r.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1_200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn outcomes_add_up() {
        let mut a = Outcome::new();
        a.requests = 3;
        a.cache = [1, 2, 0];
        a.latency.record(100).expect("in range");
        let mut b = Outcome::new();
        b.requests = 2;
        b.errors = 1;
        b.first_error = Some("500: boom".into());
        b.latency.record(300).expect("in range");
        a.merge(b);
        a.elapsed = Duration::from_secs(1);
        assert_eq!((a.requests, a.errors, a.hits()), (5, 1, 1));
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.rate(), 5.0);
        assert_eq!(a.first_error.as_deref(), Some("500: boom"));
    }
}
