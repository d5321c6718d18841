//! A loopback TCP proxy that a test can cut and restore, to take a database or a broker away
//! in the middle of a run.
//!
//! The proxy runs on a thread and runtime of its own, so it keeps forwarding whatever the test
//! does meanwhile (a blocking call, a single-threaded runtime busy elsewhere) and can be used
//! from synchronous tests too.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{oneshot, watch};

/// The longest [`TcpProxy::cut`] waits for the open connections to close.
const CUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Forwards connections from `127.0.0.1:<some port>` to an upstream address until cut.
///
/// While cut, open connections are closed with a reset and new ones are accepted and reset at
/// once, as if the service had gone away; after [`TcpProxy::restore`] new connections are
/// forwarded again. Stops, closing everything, when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    cut: watch::Sender<bool>,
    open: Arc<OpenConnections>,
    /// How long [`TcpProxy::cut`] waits: [`CUT_TIMEOUT`], shorter in this module's tests.
    cut_timeout: Duration,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream` listening on a free loopback port.
    ///
    /// Panics if no loopback port can be bound or the proxy's runtime cannot be built: the test
    /// cannot go on without them.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        match Self::try_start(upstream) {
            Ok(proxy) => proxy,
            Err(e) => panic!("cannot start a TCP proxy to {upstream}: {e}"),
        }
    }

    fn try_start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (cut, cut_rx) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let open = Arc::new(OpenConnections::default());
        let counter = open.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tcp-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    // Registering with the reactor needs the runtime, hence here.
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, upstream, cut_rx, counter) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here aborts every connection task, closing its sockets.
            })?;
        Ok(TcpProxy {
            addr,
            upstream,
            cut,
            open,
            cut_timeout: CUT_TIMEOUT,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address to connect to instead of the upstream one.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Closes every open connection and resets new ones until [`TcpProxy::restore`].
    ///
    /// Returns once the open connections are closed, so that nothing gets through after the cut.
    ///
    /// This blocks the calling thread, but only until the proxy's own thread has reset the
    /// connections, which it does at once (typically well under a millisecond): the wait is
    /// woken by the last close, not polled, and does not depend on the caller's runtime. On a
    /// multi-threaded tokio runtime the wait is wrapped in `block_in_place`, so the worker's
    /// other tasks move to another thread meanwhile; on a current-thread runtime (the default of
    /// `#[tokio::test]`) the test's tasks pause for that moment, which cannot deadlock since the
    /// proxy does not run on them.
    ///
    /// Panics if connections are still open after five seconds: the proxy's thread is stuck, and
    /// the test could not trust the cut.
    pub fn cut(&self) {
        self.cut.send_replace(true);
        let timeout = self.cut_timeout;
        let remaining = block_briefly(|| self.open.wait_until_none(timeout));
        assert!(
            remaining == 0,
            "TcpProxy::cut: {remaining} connection(s) to {} still open {timeout:?} after the cut; \
             the proxy's thread is stuck, so the cut cannot be relied on",
            self.upstream
        );
    }

    /// Forwards new connections again after [`TcpProxy::cut`].
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Whether the proxy is cut.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// How many connections are being forwarded right now.
    pub fn open_connections(&self) -> usize {
        *self.open.lock()
    }
}

/// Runs `wait`, a short blocking wait, without holding up other tasks of a multi-threaded tokio
/// runtime the caller may be on. (`block_in_place` would panic on a current-thread runtime;
/// there, and outside any runtime, `wait` simply runs.)
fn block_briefly<T>(wait: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// The number of connections being forwarded, with a signal when it drops, so that
/// [`TcpProxy::cut`] wakes as soon as the last one closes.
#[derive(Debug, Default)]
struct OpenConnections {
    count: Mutex<usize>,
    closed: Condvar,
}

impl OpenConnections {
    fn lock(&self) -> MutexGuard<'_, usize> {
        // The count stays right even if a holder panicked: every update is a single step.
        self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection until the returned guard is dropped (also when its task is aborted
    /// with the proxy's runtime).
    fn track(self: &Arc<Self>) -> OpenConnection {
        *self.lock() += 1;
        OpenConnection(self.clone())
    }

    /// Waits until no connection is open, or `timeout` passes; returns how many are.
    fn wait_until_none(&self, timeout: Duration) -> usize {
        let (count, _) = self
            .closed
            .wait_timeout_while(self.lock(), timeout, |count| *count > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *count
    }
}

/// One counted connection; see [`OpenConnections::track`].
struct OpenConnection(Arc<OpenConnections>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut count = self.0.lock();
        *count = count.saturating_sub(1);
        self.0.closed.notify_all();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Joining makes the port and every connection closed once `drop` returns.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    cut: watch::Receiver<bool>,
    open: Arc<OpenConnections>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Accept errors (out of file descriptors, a connection reset in the backlog) are
            // transient; the next accept may succeed.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if *cut.borrow() {
            reset(client);
            continue;
        }
        tokio::spawn(forward(client, upstream, cut.clone(), open.clone()));
    }
}

/// Copies bytes both ways until either side closes or the proxy is cut.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut cut: watch::Receiver<bool>,
    open: Arc<OpenConnections>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let _counted = open.track();
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let was_cut = tokio::select! {
        // The cut is checked first, so that no byte is forwarded once it is made; `wait_for`
        // also sees a cut made before this connection started to wait.
        biased;
        _ = cut.wait_for(|&is_cut| is_cut) => true,
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
    };
    if was_cut {
        reset(client);
        reset(server);
    }
}

/// Closes with a reset rather than a graceful close, so both ends notice at once, as they would
/// a crashed peer.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "still open")]
    fn cut_fails_loudly_when_connections_stay_open() {
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
        let mut proxy = TcpProxy::start(upstream);
        proxy.cut_timeout = Duration::from_millis(50);
        // A connection whose task never gets to close it, as on a stuck proxy thread.
        let stuck = proxy.open.track();
        proxy.cut();
        drop(stuck);
    }

    #[test]
    fn cut_returns_at_once_with_nothing_open() {
        let proxy = TcpProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 9)));
        let started = std::time::Instant::now();
        proxy.cut();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
