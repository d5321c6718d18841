//! Where the machine's CPU went during a phase, by program (Linux `/proc`): broker, server,
//! database and load test share the same cores, and anything else running shows up too.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Clock ticks a second in `/proc` (USER_HZ, 100 on every Linux architecture in use).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far, per process and for the whole machine.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    processes: HashMap<u32, Process>,
    /// Busy and total ticks of all CPUs.
    machine: Option<(u64, u64)>,
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// Program name (at most 15 characters).
    pub name: String,
    /// Command line, arguments separated by spaces.
    pub cmdline: String,
    /// User + system ticks so far.
    pub ticks: u64,
    /// When it started, ticks after boot: with the id, tells a process from a later one
    /// that reuses its id.
    pub start: u64,
}

impl Snapshot {
    /// Reads `/proc` now (empty where it cannot be read).
    pub fn take() -> Snapshot {
        let mut processes = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
                    && let Some((name, ticks, start)) = parse_process_stat(&stat)
                {
                    let cmdline = std::fs::read(entry.path().join("cmdline"))
                        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                        .unwrap_or_default();
                    processes.insert(
                        pid,
                        Process {
                            name,
                            cmdline,
                            ticks,
                            start,
                        },
                    );
                }
            }
        }
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_machine_stat(&s));
        Snapshot {
            at: Instant::now(),
            processes,
            machine,
        }
    }
}

/// CPU use between two snapshots, in cores (1.0 = one core busy all the time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Whole machine, busy cores.
    pub machine_busy: Option<f64>,
    /// Cores in the machine.
    pub machine_cores: Option<f64>,
    /// By program name, largest first.
    pub by_program: Vec<(String, f64)>,
}

impl Usage {
    /// What happened from `before` to `after`, with each process put under the label
    /// `label(pid, process)` gives it. Processes that started in between count from 0; those
    /// that ended in between are missed (their time is still in the machine figure).
    pub fn between(
        before: &Snapshot,
        after: &Snapshot,
        label: &dyn Fn(u32, &Process) -> String,
    ) -> Usage {
        let seconds = after.at.saturating_duration_since(before.at).as_secs_f64();
        if seconds <= 0.0 {
            return Usage::default();
        }
        let mut by_program: BTreeMap<String, u64> = BTreeMap::new();
        for (pid, p) in &after.processes {
            let earlier = match before.processes.get(pid) {
                // Kernel workers rename themselves as they work: the id and start time say
                // whether it is the same process.
                Some(b) if b.start == p.start => b.ticks,
                _ => 0,
            };
            *by_program.entry(label(*pid, p)).or_default() += p.ticks.saturating_sub(earlier);
        }
        let mut by_program: Vec<(String, f64)> = by_program
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(n, t)| (n, t as f64 / TICKS_PER_SECOND / seconds))
            .collect();
        by_program.sort_by(|a, b| b.1.total_cmp(&a.1));
        let (machine_busy, machine_cores) = match (before.machine, after.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
                (
                    Some((b1 - b0) as f64 / (t1 - t0) as f64 * cores),
                    Some(cores),
                )
            }
            _ => (None, None),
        };
        Usage {
            machine_busy,
            machine_cores,
            by_program,
        }
    }

    /// One line: total, then the busiest programs.
    pub fn summary(&self) -> String {
        let mut out = match (self.machine_busy, self.machine_cores) {
            (Some(b), Some(c)) => format!("{:.0} % of {:.0} cores busy", b * 100.0, c),
            _ => "machine load unknown".to_owned(),
        };
        let shown: Vec<String> = self
            .by_program
            .iter()
            .take(6)
            .filter(|(_, c)| *c >= 0.01)
            .map(|(n, c)| format!("{n} {:.0} %", c * 100.0))
            .collect();
        if !shown.is_empty() {
            out.push_str(": ");
            out.push_str(&shown.join(", "));
        }
        out
    }
}

/// Program name, user + system ticks and start time from a `/proc/PID/stat` line. The name is
/// in parentheses and may itself hold spaces and parentheses: the fields resume after the last
/// `)`.
pub fn parse_process_stat(stat: &str) -> Option<(String, u64, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    // After the name: state (field 3), …, utime (14), stime (15), …, starttime (22).
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let start: u64 = fields.get(19)?.parse().ok()?;
    Some((name, utime + stime, start))
}

/// Busy and total ticks from the `cpu` line of `/proc/stat` (idle and iowait are not busy).
pub fn parse_machine_stat(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_line_gives_its_name_and_cpu_ticks_even_with_odd_names() {
        let line = "4242 (tokio (w) 1) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 9 0 \
                    12345 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_process_stat(line),
            Some(("tokio (w) 1".to_owned(), 175, 12_345))
        );
        assert_eq!(parse_process_stat("garbage"), None);
    }

    #[test]
    fn the_machine_line_counts_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(parse_machine_stat(stat), Some((160, 1_000)));
    }

    fn process(name: &str, ticks: u64) -> Process {
        Process {
            name: name.to_owned(),
            cmdline: format!("{name} --flag"),
            ticks,
            start: 7,
        }
    }

    #[test]
    fn usage_is_per_label_in_cores_over_the_interval() {
        let at = Instant::now();
        let before = Snapshot {
            at,
            processes: HashMap::from([
                (1, process("postgres", 100)),
                (2, process("postgres", 50)),
                (3, process("mosquitto", 10)),
                (5, process("meterhub", 0)),
            ]),
            machine: Some((1_000, 10_000)),
        };
        let after = Snapshot {
            at: at + std::time::Duration::from_secs(2),
            processes: HashMap::from([
                (1, process("postgres", 200)),
                (2, process("postgres", 90)),
                (3, process("mosquitto", 70)),
                (5, process("meterhub", 40)),
                // Started during the interval: all its time is new.
                (4, process("meterhub", 20)),
            ]),
            machine: Some((1_300, 10_400)),
        };
        let label = |pid: u32, p: &Process| {
            if pid == 4 {
                "meterhub under test".to_owned()
            } else {
                p.name.clone()
            }
        };
        let u = Usage::between(&before, &after, &label);
        assert_eq!(
            u.by_program,
            vec![
                ("postgres".to_owned(), 0.7),
                ("mosquitto".to_owned(), 0.3),
                ("meterhub".to_owned(), 0.2),
                ("meterhub under test".to_owned(), 0.1),
            ]
        );
        let cores = u.machine_cores.expect("cores");
        assert!((u.machine_busy.expect("busy") - 0.75 * cores).abs() < 1e-9);
    }

    #[test]
    fn a_renamed_process_keeps_its_history_and_a_reused_id_does_not() {
        let at = Instant::now();
        let before = Snapshot {
            at,
            processes: HashMap::from([
                (1, process("kworker/0:1-events", 5_000)),
                (2, process("old", 9_000)),
            ]),
            machine: None,
        };
        let after = Snapshot {
            at: at + std::time::Duration::from_secs(1),
            processes: HashMap::from([
                (1, process("kworker/0:1-mm_percpu_wq", 5_010)),
                (
                    2,
                    Process {
                        start: 99,
                        ..process("new", 30)
                    },
                ),
            ]),
            machine: None,
        };
        let u = Usage::between(&before, &after, &|_, p: &Process| p.name.clone());
        assert_eq!(
            u.by_program,
            vec![
                ("new".to_owned(), 0.3),
                ("kworker/0:1-mm_percpu_wq".to_owned(), 0.1),
            ]
        );
    }
}
