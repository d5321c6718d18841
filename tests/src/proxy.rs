//! A loopback TCP proxy that a test can cut and restore, to take a database or a broker away
//! in the middle of a run.
//!
//! The proxy runs on a thread and runtime of its own, so it keeps forwarding whatever the test
//! does meanwhile (a blocking call, a single-threaded runtime busy elsewhere) and can be used
//! from synchronous tests too.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
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
    open: Arc<AtomicUsize>,
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
        let open = Arc::new(AtomicUsize::new(0));
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
    /// Returns once the open connections are closed (or after a few seconds if the proxy's
    /// thread is stuck), so that nothing gets through after the cut.
    pub fn cut(&self) {
        self.cut.send_replace(true);
        let deadline = Instant::now() + CUT_TIMEOUT;
        while self.open_connections() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
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
        self.open.load(Ordering::SeqCst)
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
    open: Arc<AtomicUsize>,
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
    open: Arc<AtomicUsize>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    open.fetch_add(1, Ordering::SeqCst);
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
    open.fetch_sub(1, Ordering::SeqCst);
}

/// Closes with a reset rather than a graceful close, so both ends notice at once, as they would
/// a crashed peer.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
