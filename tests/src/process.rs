//! Start a binary under test, wait until it is ready, kill it, restart it.
//!
//! The binary's stdout and stderr go to files in a temporary folder, so nothing reaches the
//! terminal; they are printed when the owning test fails (or always with `TEST_LOG` set), and
//! every readiness error quotes them.
//!
//! The child runs in a process group of its own, so that a kill also ends whatever it started
//! (a shell's children, for instance), even after the child itself has exited. An exited child is
//! left unreaped (a zombie) until [`Process::kill`], [`Process::restart`] or the drop: while it
//! is, its pid, which is also the group's id, cannot be handed to another process, so signalling
//! the group can only reach what this run started.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use test_support::Process;
//!
//! let port = test_support::free_port()?;
//! let mut server = Process::builder("/path/to/meterhub") // env!("CARGO_BIN_EXE_meterhub")
//!     .args(["serve", "--port", &port.to_string()])
//!     .env("METERHUB_DATABASE__URL", "sqlite:///tmp/x.db")
//!     .start()?;
//! server.wait_for_port(port, Duration::from_secs(30)).await?;
//! server.kill()?;
//! server.restart()?;
//! server.wait_for_output("listening", Duration::from_secs(30)).await?;
//! let status = server.terminate(Duration::from_secs(10)).await?;
//! assert!(status.success());
//! # Ok(())
//! # }
//! ```

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitIdStatus};
use tempfile::TempDir;

/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(20);

/// Inherited variables with this prefix are not passed on to the child: a developer's own
/// meterhub configuration must not leak into a test. Set what the test needs with
/// [`ProcessBuilder::env`].
const REMOVED_ENV_PREFIX: &str = "METERHUB_";

/// What to start: a program, its arguments, environment and working folder.
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    current_dir: Option<PathBuf>,
}

impl ProcessBuilder {
    /// A builder for `program`, a path such as `env!("CARGO_BIN_EXE_meterhub")`.
    pub fn new(program: impl Into<PathBuf>) -> ProcessBuilder {
        ProcessBuilder {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> ProcessBuilder {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(mut self, args: I) -> ProcessBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child. The child inherits the test's environment
    /// except for variables starting with `METERHUB_`, so that a developer's configuration
    /// cannot leak in.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> ProcessBuilder {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an inherited environment variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> ProcessBuilder {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Runs the child in `dir` instead of the test's working folder.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> ProcessBuilder {
        self.current_dir = Some(dir.into());
        self
    }

    /// Starts the program, its output captured to files.
    pub fn start(self) -> anyhow::Result<Process> {
        let logs = tempfile::Builder::new()
            .prefix("meterhub-process-")
            .tempdir()
            .context("cannot create a folder for the process output")?;
        let mut process = Process {
            stdout_path: logs.path().join("stdout.log"),
            stderr_path: logs.path().join("stderr.log"),
            _logs: logs,
            builder: self,
            child: None,
            status: None,
            reaped: false,
            run_offsets: (0, 0),
            runs: 0,
        };
        process.spawn()?;
        Ok(process)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (key, _) in std::env::vars_os() {
            if key
                .as_encoded_bytes()
                .starts_with(REMOVED_ENV_PREFIX.as_bytes())
            {
                command.env_remove(key);
            }
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        // Its own process group: a group kill then reaches its children too, and a Ctrl-C
        // meant for the test harness does not race the test's own shutdown of the child.
        command.process_group(0);
        command.stdin(Stdio::null());
        command
    }
}

/// A running (or exited) child process with captured output; killed when dropped.
#[derive(Debug)]
pub struct Process {
    builder: ProcessBuilder,
    child: Option<Child>,
    /// The exit status of the current run, once it has exited.
    status: Option<ExitStatus>,
    /// Whether the current run has been reaped: from then on its pid, the group's id, may
    /// belong to someone else, so the group is not signalled any more.
    reaped: bool,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// Where the current run's output starts in each file: readiness only looks at this run.
    run_offsets: (u64, u64),
    runs: u32,
    // Declared last: the files outlive the child that writes them.
    _logs: TempDir,
}

impl Process {
    /// A builder for `program`; see [`ProcessBuilder`].
    pub fn builder(program: impl Into<PathBuf>) -> ProcessBuilder {
        ProcessBuilder::new(program)
    }

    /// The operating system's id of the current run (also the id of its process group), until
    /// the run is reaped by [`Process::kill`], [`Process::restart`] or the drop.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id).filter(|_| !self.reaped)
    }

    /// Whether the current run is still going.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// The exit status of the current run if it has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && !self.reaped
            && let Some(pid) = self.child.as_ref().and_then(pid_of)
            // NOWAIT: look without reaping, so that the group's id stays reserved (see the
            // module's documentation) until `kill` has signalled the group.
            && let Ok(Some(info)) = rustix::process::waitid(
                WaitId::Pid(pid),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
            )
        {
            self.status = exit_status(&info);
        }
        self.status
    }

    /// Waits until something accepts TCP connections on `127.0.0.1:port`.
    ///
    /// Fails, quoting the output, when the process exits first or `timeout` passes. A connection
    /// accepted while the process has already exited fails too: another process owns the port
    /// (the child may have exited because it could not bind it).
    pub async fn wait_for_port(&mut self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + timeout;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                if let Some(status) = self.try_status() {
                    bail!(
                        "{} exited ({status}), yet something else accepts connections on port \
                         {port}\n{}",
                        self.program(),
                        self.output()
                    );
                }
                return Ok(());
            }
            self.check_waiting(deadline, &format!("port {port} to accept connections"))?;
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until a whole line (one that ends in a newline) of this run's stdout or stderr
    /// contains `needle`, and returns that line.
    ///
    /// Fails, quoting the output, when the process exits first or `timeout` passes.
    pub async fn wait_for_output(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            for (path, offset) in [
                (&self.stdout_path, self.run_offsets.0),
                (&self.stderr_path, self.run_offsets.1),
            ] {
                let text = read_from(path, offset);
                // Only whole lines: a line written in pieces (`eprintln!` writes its arguments
                // one by one to an unbuffered stderr) is read again once its newline is there.
                let whole = text.rfind('\n').map_or("", |end| &text[..end]);
                if let Some(line) = whole.lines().find(|line| line.contains(needle)) {
                    return Ok(line.to_owned());
                }
            }
            self.check_waiting(deadline, &format!("output containing {needle:?}"))?;
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the process to exit by itself and returns its status.
    ///
    /// Fails, quoting the output, when `timeout` passes first (the process is left running).
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.program(),
                    self.output()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills the process and its process group with SIGKILL, as a crash or power loss would,
    /// and returns its exit status (the earlier one if it had already exited).
    ///
    /// The group is killed even when the process itself has already exited, so that nothing it
    /// started (a shell's background job, say) outlives it.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(child) = &mut self.child else {
            bail!("{} was never started", self.builder.program.display());
        };
        if self.reaped
            && let Some(status) = self.status
        {
            // Killed (group included) and reaped before: the group's id may be reused by now.
            return Ok(status);
        }
        // The group id is the child's pid (`process_group(0)`). The child is not reaped yet, so
        // that id still names this run's group, whether the child runs or has exited.
        if let Some(pid) = pid_of(child) {
            match rustix::process::kill_process_group(pid, Signal::KILL) {
                // ESRCH: nobody is left in the group.
                Ok(()) | Err(Errno::SRCH) => {}
                // EPERM, say, from a member that changed its credentials: end the child at
                // least.
                Err(_) => {
                    let _ = child.kill();
                }
            }
        }
        let status = child.wait().context("cannot reap the killed process")?;
        self.reaped = true;
        // An earlier exit keeps its status; `wait` reports the same one.
        let status = *self.status.get_or_insert(status);
        Ok(status)
    }

    /// Sends SIGTERM (a graceful shutdown request) and waits up to `timeout` for the exit
    /// status. If the process is still running then, it is killed and this fails.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_status() {
            return Ok(status);
        }
        if let Some(pid) = self.child.as_ref().and_then(pid_of) {
            rustix::process::kill_process(pid, Signal::TERM)
                .context("cannot send SIGTERM to the process")?;
        }
        match self.wait(timeout).await {
            Ok(status) => Ok(status),
            Err(_) => {
                self.kill()?;
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM; killed it\n{}",
                    self.program(),
                    self.output()
                )
            }
        }
    }

    /// Kills the current run if it is still going and starts the program again with the same
    /// arguments and environment. Its output is appended to the same capture.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.kill()?;
        }
        self.spawn()
    }

    /// Everything the process wrote to stdout, over all runs.
    pub fn stdout(&self) -> String {
        read_from(&self.stdout_path, 0)
    }

    /// Everything the process wrote to stderr, over all runs.
    pub fn stderr(&self) -> String {
        read_from(&self.stderr_path, 0)
    }

    /// The captured output, labelled, for error messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout of {program} ---\n{}\n--- stderr of {program} ---\n{}\n--- end ---",
            self.stdout().trim_end(),
            self.stderr().trim_end(),
            program = self.program()
        )
    }

    fn program(&self) -> String {
        self.builder.program.display().to_string()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.runs += 1;
        let mut stdout = append(&self.stdout_path)?;
        let mut stderr = append(&self.stderr_path)?;
        if self.runs > 1 {
            // A visible boundary between runs for whoever reads the capture.
            let marker = format!("--- run {} ---\n", self.runs);
            stdout.write_all(marker.as_bytes())?;
            stderr.write_all(marker.as_bytes())?;
        }
        self.run_offsets = (
            stdout.seek(SeekFrom::End(0))?,
            stderr.seek(SeekFrom::End(0))?,
        );
        let child = self
            .builder
            .command()
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program()))?;
        self.child = Some(child);
        self.status = None;
        self.reaped = false;
        Ok(())
    }

    /// Fails when the process has exited or the deadline has passed, while waiting for `what`.
    fn check_waiting(&mut self, deadline: Instant, what: &str) -> anyhow::Result<()> {
        if let Some(status) = self.try_status() {
            bail!(
                "{} exited ({status}) while the test waited for {what}\n{}",
                self.program(),
                self.output()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} was not ready: no {what} in time\n{}",
                self.program(),
                self.output()
            );
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.kill();
        }
        if std::thread::panicking() || crate::test_log_enabled() {
            eprintln!("{}", self.output());
        }
    }
}

fn pid_of(child: &Child) -> Option<Pid> {
    i32::try_from(child.id()).ok().and_then(Pid::from_raw)
}

/// The exit status `waitid` describes, as `wait` would have reported it; `None` for a stop or a
/// continue, which are not exits.
fn exit_status(info: &WaitIdStatus) -> Option<ExitStatus> {
    // The encoding of wait(2)'s status word: the exit code in the second byte; or the signal in
    // the low seven bits, 0x80 marking a core dump.
    if let Some(code) = info.exit_status() {
        Some(ExitStatus::from_raw((code & 0xff) << 8))
    } else {
        let core = if info.dumped() { 0x80 } else { 0 };
        info.terminating_signal()
            .map(|signal| ExitStatus::from_raw((signal & 0x7f) | core))
    }
}

fn append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The file's text from `offset` on; unreadable bytes become U+FFFD, a missing file is empty.
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
