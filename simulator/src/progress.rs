//! What `meterhub-sim run` does around a run, whatever the transport: stop on ctrl-c, and
//! print a progress line each time the run reports.

use std::time::{Duration, Instant};

use meterhub_sim::runner::Report;
use meterhub_sim::udp::UdpReport;
use tokio_util::sync::CancellationToken;

/// A token cancelled when the user presses ctrl-c, so the run can end cleanly and still print
/// its summary.
pub fn stop_on_ctrl_c() -> CancellationToken {
    let stop = CancellationToken::new();
    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        ctrl_c.cancel();
    });
    stop
}

/// A run's report as a progress line.
pub trait Progress {
    /// Uplinks sent so far.
    fn uplinks(&self) -> u64;
    /// The line, given the uplinks a second since the last line and the time since the start.
    fn progress_line(&self, rate: f64, elapsed: Duration) -> String;
}

impl Progress for Report {
    fn uplinks(&self) -> u64 {
        self.uplinks
    }

    fn progress_line(&self, rate: f64, elapsed: Duration) -> String {
        Report::progress_line(self, rate, elapsed)
    }
}

impl Progress for UdpReport {
    fn uplinks(&self) -> u64 {
        self.uplinks
    }

    fn progress_line(&self, rate: f64, elapsed: Duration) -> String {
        UdpReport::progress_line(self, rate, elapsed)
    }
}

/// Prints each report it is given as a progress line on stderr, timed from `started`. The
/// rate is over the time since the previous line, not since the start, so a run that slows
/// down shows it.
pub fn printer<R: Progress>(started: Instant) -> impl FnMut(&R) {
    let mut last = (Instant::now(), 0u64);
    move |r| {
        let rate = (r.uplinks() - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
        last = (Instant::now(), r.uplinks());
        eprintln!("{}", r.progress_line(rate, started.elapsed()));
    }
}
