//! CPU time per thread, summed by role (producer, consumer, shard, server, client).
//!
//! CPU time moves far less than wall time on a shared machine, so it is the figure that says
//! what a record costs. The kernel keeps each thread's time on the CPU in nanoseconds
//! (`/proc/<pid>/task/<tid>/schedstat`, first field); a thread's role comes from its name
//! (`comm`), which every thread that matters sets: the engine names its shards `rill-shard-N`,
//! the server its threads `rill-conn-*`, `rill-accept` and `rill-groups`, librdkafka its own
//! `rdk:*`, and the harness its producers and consumers `bench-producer-N`, `bench-consumer-N` (and group members `bench-member-N`, consumers).
//!
//! A thread that ends before the window closes is counted up to its last sample; the harness's
//! own threads report their final figure as they end ([`report_exit`]), so only the engine's
//! and the client library's threads can lose their last [`crate::measure::Meter::INTERVAL`].
//! Whatever the roles miss (that, the main thread, the meter) is `other`: the roles always sum
//! to the process's CPU time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// What a thread does, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Producer,
    Consumer,
    Shard,
    Server,
    Client,
    /// io_uring's kernel workers (`iou-wrk-*`): writes the kernel could not issue inline.
    IoWorker,
    Other,
}

impl Role {
    /// Thread names are cut to 15 bytes by the kernel, so only prefixes are matched.
    pub fn of(name: &str) -> Role {
        const PREFIXES: &[(&str, Role)] = &[
            ("bench-producer", Role::Producer),
            ("bench-consumer", Role::Consumer),
            ("bench-member", Role::Consumer),
            ("rill-shard", Role::Shard),
            ("rill-conn", Role::Server),
            ("rill-accept", Role::Server),
            ("rill-groups", Role::Server),
            ("rdk:", Role::Client),
            ("iou-wrk", Role::IoWorker),
        ];
        PREFIXES
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map_or(Role::Other, |&(_, role)| role)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Shard => "shard",
            Role::Server => "server",
            Role::Client => "client",
            Role::IoWorker => "io_worker",
            Role::Other => "other",
        }
    }
}

/// One thread as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadTime {
    pub tid: u32,
    pub name: String,
    pub cpu_ns: u64,
}

/// Every thread of process `pid` (`None`: this process) and its CPU time so far. Threads that
/// end while the directory is read are skipped.
pub fn threads(pid: Option<u32>) -> Vec<ThreadTime> {
    let base = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let tid = entry.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let cpu_ns = schedstat_ns(&entry.path())?;
            Some(ThreadTime {
                tid,
                name: name.trim_end().to_owned(),
                cpu_ns,
            })
        })
        .collect()
}

fn schedstat_ns(task: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(task.join("schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Final figures of the harness's threads that have ended, waiting to be merged into the
/// window that was open.
static EXITED: Mutex<Vec<ThreadTime>> = Mutex::new(Vec::new());

/// Called by a harness thread as its last act, so its whole CPU time is counted.
pub fn report_exit() {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    let Ok(tid) = u32::try_from(tid) else { return };
    let me = threads(None).into_iter().find(|t| t.tid == tid);
    if let Some(me) = me {
        EXITED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(me);
    }
}

/// CPU time per thread across a window: a baseline at the start, the latest sample of every
/// thread seen since.
#[derive(Debug)]
pub struct Tracker {
    pid: Option<u32>,
    baseline: HashMap<u32, u64>,
    latest: HashMap<u32, ThreadTime>,
}

impl Tracker {
    /// Starts a window on process `pid` (`None`: this process).
    pub fn start(pid: Option<u32>) -> Self {
        if pid.is_none() {
            EXITED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        let baseline = threads(pid)
            .into_iter()
            .map(|t| (t.tid, t.cpu_ns))
            .collect();
        Self {
            pid,
            baseline,
            latest: HashMap::new(),
        }
    }

    /// Reads every thread again; a thread's figure only grows.
    pub fn sample(&mut self) {
        for thread in threads(self.pid) {
            self.keep(thread);
        }
    }

    fn keep(&mut self, thread: ThreadTime) {
        match self.latest.get_mut(&thread.tid) {
            Some(seen) if seen.cpu_ns >= thread.cpu_ns => {}
            Some(seen) => *seen = thread,
            None => {
                self.latest.insert(thread.tid, thread);
            }
        }
    }

    /// CPU time per role since the start; `total` (the process's, every thread) fills `other`
    /// with what no role accounts for.
    pub fn finish(mut self, total: Duration) -> BTreeMap<Role, Duration> {
        self.sample();
        if self.pid.is_none() {
            let exited =
                std::mem::take(&mut *EXITED.lock().unwrap_or_else(PoisonError::into_inner));
            for thread in exited {
                self.keep(thread);
            }
        }
        let mut by_role: BTreeMap<Role, Duration> = BTreeMap::new();
        for thread in self.latest.values() {
            let role = Role::of(&thread.name);
            if role == Role::Other {
                continue;
            }
            let before = self.baseline.get(&thread.tid).copied().unwrap_or(0);
            let spent = Duration::from_nanos(thread.cpu_ns.saturating_sub(before));
            *by_role.entry(role).or_default() += spent;
        }
        let counted: Duration = by_role.values().sum();
        by_role.insert(Role::Other, total.saturating_sub(counted));
        by_role
    }
}

/// Nanoseconds per record by role name, for the report.
pub fn per_record(by_role: &BTreeMap<Role, Duration>, records: u64) -> BTreeMap<String, f64> {
    by_role
        .iter()
        .map(|(role, cpu)| {
            let ns = if records > 0 {
                cpu.as_nanos() as f64 / records as f64
            } else {
                0.0
            };
            (role.name().to_owned(), ns)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_thread_names() {
        assert_eq!(Role::of("bench-producer-"), Role::Producer);
        assert_eq!(Role::of("rill-shard-1"), Role::Shard);
        assert_eq!(Role::of("rill-conn-write"), Role::Server);
        assert_eq!(Role::of("rdk:broker1"), Role::Client);
        assert_eq!(Role::of("rill-bench"), Role::Other);
    }

    #[test]
    fn a_busy_named_thread_is_counted_in_its_role() {
        let tracker = Tracker::start(None);
        std::thread::Builder::new()
            .name("bench-consumer-9".to_owned())
            .spawn(|| {
                // Busy until the thread itself has run 30 ms (not 30 ms of wall time: on a
                // loaded machine that may hold only a few ms of CPU).
                let own = std::path::Path::new("/proc/thread-self");
                let mut x = 0u64;
                while schedstat_ns(own).is_some_and(|ns| ns < 30_000_000) {
                    for _ in 0..10_000 {
                        x = x.wrapping_add(std::hint::black_box(1));
                    }
                }
                report_exit();
                x
            })
            .unwrap()
            .join()
            .unwrap();
        // A total below what the roles hold leaves nothing for `other`.
        let by_role = tracker.finish(Duration::ZERO);
        let consumer = by_role[&Role::Consumer];
        // Other tests may run threads of their own at the same time: only this one's lower
        // bound is certain.
        assert!(consumer >= Duration::from_millis(10), "{consumer:?}");
        assert_eq!(by_role[&Role::Other], Duration::ZERO);
    }
}
