//! A deterministic, seeded storage simulator: the [`Storage`] an engine writes through in the
//! fault tests, after the storage simulators of TigerBeetle and redb.
//!
//! It does the real I/O (so the engine's maps read real bytes) and keeps its own model of what
//! a disk would hold after a power loss:
//!
//! - per file, the ranges written since the last successful sync;
//! - the ranges a *failed* sync covered, which are lost for good unless written again (the
//!   kernel may drop dirty pages after a failed `fsync` and report a later one as successful);
//! - on [`SimStorage::crash`], every I/O fails (the process is gone); then
//!   [`SimStorage::restart`] tears every unsynced range at sector granularity (each 512-byte
//!   sector keeps its new bytes or reverts to zeros, at random) and zeroes every lost range.
//!
//! Faults are drawn from a seeded generator at rates the caller picks: `EIO` and `ENOSPC` on
//! writes and syncs, torn writes (a prefix lands, then `EIO`), short writes (io_uring: the
//! state machine must resubmit the rest), and slow completions. On the io_uring path they are
//! injected into the completion results the writer's state machine consumes. Scripted faults
//! (fail the n-th sync) serve the tests of single defects.
//!
//! What it does not model: metadata operations outside the backend (creating, truncating and
//! sealing segments, index and checkpoint files) are taken as durable when they return.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::io::{IoBackend, Storage};

/// Sector size of the torn-write model: the unit a crash keeps or loses.
pub const SECTOR: u64 = 512;

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same faults.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }
}

/// Fault rates, in per mille of operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultRates {
    pub write_eio: u32,
    pub write_enospc: u32,
    pub sync_eio: u32,
    pub sync_enospc: u32,
    /// A prefix of the write lands, then `EIO` (portable path).
    pub torn_write: u32,
    /// io_uring reports fewer bytes than asked; the writer must resubmit the rest.
    pub short_write: u32,
    /// The operation completes after a short sleep.
    pub slow: u32,
}

/// How many faults of each kind were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub write_eio: u64,
    pub write_enospc: u64,
    pub sync_eio: u64,
    pub sync_enospc: u64,
    pub torn_write: u64,
    pub short_write: u64,
    pub slow: u64,
    pub crashes: u64,
    /// Sectors a crash reverted.
    pub torn_sectors: u64,
}

impl FaultCounts {
    pub fn add(&mut self, other: &FaultCounts) {
        self.write_eio += other.write_eio;
        self.write_enospc += other.write_enospc;
        self.sync_eio += other.sync_eio;
        self.sync_enospc += other.sync_enospc;
        self.torn_write += other.torn_write;
        self.short_write += other.short_write;
        self.slow += other.slow;
        self.crashes += other.crashes;
        self.torn_sectors += other.torn_sectors;
    }
}

/// What the model knows of one file: which byte ranges a crash may tear and which it loses.
///
/// Ranges, not a single "synced up to" mark, because the engine re-writes below its furthest
/// write: after a write refused for lack of space it starts again from the log's published end,
/// over bytes that a failed write (and maybe a failed sync) already covered.
#[derive(Clone, Debug, Default)]
struct FileModel {
    /// Written since the last successful sync (maybe only to the page cache): each sector
    /// keeps its new bytes or not at a crash.
    dirty: Ranges,
    /// Covered by a failed sync and not written since: gone after a crash, whatever later
    /// syncs say (the kernel may drop dirty pages after a failed `fsync`).
    lost: Ranges,
}

impl FileModel {
    /// New bytes over `from..to`: no longer lost, not yet durable.
    fn written(&mut self, from: u64, to: u64) {
        self.lost.remove(from, to);
        self.dirty.insert(from, to);
    }

    fn synced(&mut self) {
        self.dirty.clear();
    }

    fn sync_failed(&mut self) {
        for (from, to) in std::mem::take(&mut self.dirty).0 {
            self.lost.insert(from, to);
        }
    }
}

/// Disjoint, sorted, non-adjacent half-open byte ranges.
#[derive(Clone, Debug, Default)]
struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    fn insert(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        let (mut from, mut to) = (from, to);
        // Absorb every range that overlaps or touches the new one.
        self.0.retain(|&(a, b)| {
            let apart = b < from || a > to;
            if !apart {
                from = from.min(a);
                to = to.max(b);
            }
            apart
        });
        let at = self.0.partition_point(|&(a, _)| a < from);
        self.0.insert(at, (from, to));
    }

    fn remove(&mut self, from: u64, to: u64) {
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b <= from || a >= to {
                kept.push((a, b));
                continue;
            }
            if a < from {
                kept.push((a, from));
            }
            if b > to {
                kept.push((to, b));
            }
        }
        self.0 = kept;
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[derive(Debug)]
struct State {
    seed: u64,
    /// Tears sectors at a crash.
    rng: SimRng,
    /// One stream of fault decisions per partition and path, so that the decisions of one
    /// partition do not depend on how its operations interleave with another's.
    streams: HashMap<String, SimRng>,
    rates: FaultRates,
    crashed: bool,
    files: BTreeMap<PathBuf, FileModel>,
    counts: FaultCounts,
    /// Syncs seen so far (both paths), for scripted faults.
    syncs: u64,
    /// Fail the sync with this number (1-based) with this error number.
    fail_sync: Option<(u64, i32)>,
    /// io_uring tokens whose last write result was a fault injected in place of a full write:
    /// the sync linked to that write must come back cancelled.
    broken_links: HashSet<u64>,
    /// Partition directories with a failed segment sync since [`SimStorage::take_failed_syncs`].
    failed_syncs: HashSet<String>,
}

/// The simulator; share it with the engine through `EngineConfig::storage`.
#[derive(Debug)]
pub struct SimStorage {
    state: Mutex<State>,
}

impl SimStorage {
    pub fn new(seed: u64, rates: FaultRates) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                seed,
                rng: SimRng::new(seed),
                streams: HashMap::new(),
                rates,
                crashed: false,
                files: BTreeMap::new(),
                counts: FaultCounts::default(),
                syncs: 0,
                fail_sync: None,
                broken_links: HashSet::new(),
                failed_syncs: HashSet::new(),
            }),
        })
    }

    /// This simulator as the storage an engine writes through.
    pub fn as_storage(self: &Arc<Self>) -> Arc<dyn Storage> {
        Arc::new(self.clone())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails the `nth` sync from now (1-based, counting both paths) with `errno`; every other
    /// operation succeeds unless the rates say otherwise.
    pub fn fail_sync(&self, nth: u64, errno: i32) {
        let mut state = self.state();
        let at = state.syncs + nth;
        state.fail_sync = Some((at, errno));
    }

    /// Changes the fault rates from now on.
    pub fn set_rates(&self, rates: FaultRates) {
        self.state().rates = rates;
    }

    pub fn counts(&self) -> FaultCounts {
        self.state().counts
    }

    /// A clean restart of the engine: recovery re-read the files, and what it kept is what
    /// the disk holds from now on.
    /// The partition directories (by name) in which a segment sync failed since the last
    /// call: their next open cuts the log at the last good sync, so records acknowledged as
    /// written may be gone even without a crash.
    pub fn take_failed_syncs(&self) -> HashSet<String> {
        std::mem::take(&mut self.state().failed_syncs)
    }

    pub fn forget_files(&self) {
        self.state().files.clear();
    }

    /// The process dies: from now on every write and sync fails, until [`Self::restart`].
    pub fn crash(&self) {
        let mut state = self.state();
        state.crashed = true;
        state.counts.crashes += 1;
    }

    /// After a crash (and after the engine is gone): puts the files in the state a power loss
    /// would leave, then lets I/O through again.
    pub fn restart(&self) -> io::Result<()> {
        let mut state = self.state();
        let files = std::mem::take(&mut state.files);
        for (path, model) in files {
            let file = match OpenOptions::new().write(true).open(&path) {
                Ok(file) => file,
                // Deleted by retention (or never created): nothing to tear.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            let length = file.metadata()?.len();
            for &(from, to) in &model.dirty.0 {
                let mut sector = from - from % SECTOR;
                while sector < to {
                    if state.rng.chance(500) {
                        zero(&file, sector.max(from), (sector + SECTOR).min(to), length)?;
                        state.counts.torn_sectors += 1;
                    }
                    sector += SECTOR;
                }
            }
            for (from, to) in model.lost.0 {
                zero(&file, from, to, length)?;
            }
        }
        state.crashed = false;
        Ok(())
    }
}

impl State {
    /// The decision stream named `key`, taken out (put it back with [`State::put`]).
    fn take(&mut self, key: &str) -> SimRng {
        self.streams.remove(key).unwrap_or_else(|| {
            let mut hash = self.seed;
            for byte in key.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            SimRng::new(hash)
        })
    }

    fn put(&mut self, key: String, rng: SimRng) {
        self.streams.insert(key, rng);
    }
}

/// The decision stream of a file on the portable path: its partition directory and its own
/// name. One stream per file keeps a seed's faults independent of thread timing: a roll's
/// sync of the old segment runs on the sealer thread while the shard writes the new one.
fn decisions_of(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    format!("{}/{}", stream_of(path), file.unwrap_or_default())
}

/// A file's partition directory's name.
fn stream_of(path: &Path) -> String {
    path.parent().and_then(Path::file_name).map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// Zeroes `from..to` of `file`, within its length.
fn zero(file: &File, from: u64, to: u64, length: u64) -> io::Result<()> {
    let to = to.min(length);
    if from >= to {
        return Ok(());
    }
    let len = usize::try_from(to - from).map_err(io::Error::other)?;
    file.write_all_at(&vec![0; len], from)
}

/// The path of an open file, as the model keys it.
fn path_of(file: &File) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Sleeps a little when the dice say the operation is slow (outside the lock).
fn maybe_slow(slow: bool) {
    if slow {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// One partition's backend on the portable path.
#[derive(Debug)]
struct SimBackend {
    sim: Arc<SimStorage>,
}

impl IoBackend for SimBackend {
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
        let path = path_of(file)?;
        let key = decisions_of(&path);
        let (fault, slow) = {
            let mut state = self.sim.state();
            if state.crashed {
                return Err(errno(libc::EIO));
            }
            let rates = state.rates;
            let mut rng = state.take(&key);
            let slow = rng.chance(rates.slow);
            let fault = if rng.chance(rates.write_enospc) {
                state.counts.write_enospc += 1;
                Some(libc::ENOSPC)
            } else if rng.chance(rates.write_eio) {
                state.counts.write_eio += 1;
                Some(libc::EIO)
            } else if rng.chance(rates.torn_write) && bytes.len() > 1 {
                state.counts.torn_write += 1;
                Some(0)
            } else {
                None
            };
            if slow {
                state.counts.slow += 1;
            }
            let prefix = match fault {
                Some(0) => 1 + rng.below(bytes.len() as u64 - 1) as usize,
                _ => bytes.len(),
            };
            state.put(key, rng);
            if fault.is_none_or(|code| code == 0) {
                // What lands (all of it, or a torn prefix) is written but unsynced.
                let model = state.files.entry(path).or_default();
                model.written(position, position + prefix as u64);
            }
            (fault.map(|code| (code, prefix)), slow)
        };
        maybe_slow(slow);
        match fault {
            None => file.write_all_at(bytes, position),
            Some((0, prefix)) => {
                file.write_all_at(&bytes[..prefix], position)?;
                Err(errno(libc::EIO))
            }
            Some((code, _)) => Err(errno(code)),
        }
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        let path = path_of(file)?;
        let key = decisions_of(&path);
        let (result, slow) = {
            let mut state = self.sim.state();
            if state.crashed {
                return Err(errno(libc::EIO));
            }
            let mut rng = state.take(&key);
            let fault = decide_sync(&mut state, &mut rng);
            let slow = rng.chance(state.rates.slow);
            state.put(key.clone(), rng);
            if slow {
                state.counts.slow += 1;
            }
            if let Some(model) = state.files.get_mut(&path) {
                match fault {
                    Some(_) => model.sync_failed(),
                    None => model.synced(),
                }
            }
            if fault.is_some() {
                state.failed_syncs.insert(stream_of(&path));
            }
            (fault.map_or(Ok(()), |code| Err(errno(code))), slow)
        };
        // No real fdatasync: the model, not the disk, decides what a crash keeps.
        maybe_slow(slow);
        result
    }

    fn name(&self) -> &'static str {
        "simulated"
    }
}

/// Whether this sync fails, and with what: a scripted fault first, then the rates.
fn decide_sync(state: &mut State, rng: &mut SimRng) -> Option<i32> {
    state.syncs += 1;
    if let Some((at, code)) = state.fail_sync
        && at == state.syncs
    {
        state.fail_sync = None;
        count_sync_fault(state, code);
        return Some(code);
    }
    let rates = state.rates;
    let code = if rng.chance(rates.sync_enospc) {
        libc::ENOSPC
    } else if rng.chance(rates.sync_eio) {
        libc::EIO
    } else {
        return None;
    };
    count_sync_fault(state, code);
    Some(code)
}

/// The result a write completion reports: the kernel's, or a fault the rates inject in its
/// place (an error, or fewer bytes than were written).
fn inject_write(state: &mut State, rng: &mut SimRng, res: i32) -> i32 {
    let rates = state.rates;
    if res <= 0 {
        res
    } else if rng.chance(rates.write_enospc) {
        state.counts.write_enospc += 1;
        -libc::ENOSPC
    } else if rng.chance(rates.write_eio) {
        state.counts.write_eio += 1;
        -libc::EIO
    } else if res > 1 && rng.chance(rates.short_write) {
        state.counts.short_write += 1;
        1 + rng.below(res as u64 - 1) as i32
    } else {
        res
    }
}

fn count_sync_fault(state: &mut State, code: i32) {
    if code == libc::ENOSPC {
        state.counts.sync_enospc += 1;
    } else {
        state.counts.sync_eio += 1;
    }
}

impl Storage for Arc<SimStorage> {
    fn backend(&self) -> Box<dyn IoBackend> {
        Box::new(SimBackend { sim: self.clone() })
    }

    fn uring_result(&self, token: u64, is_sync: bool, res: i32) -> i32 {
        // One stream per partition (the token's partition half), as on the portable path; the
        // whole token, which numbers the write too, names a link.
        let key = format!(
            "uring-{}-{}",
            crate::engine::partition_of(token),
            if is_sync { "sync" } else { "write" }
        );
        let (res, slow) = {
            let mut state = self.state();
            if state.crashed {
                return -libc::EIO;
            }
            let mut rng = state.take(&key);
            let slow = rng.chance(state.rates.slow);
            if slow {
                state.counts.slow += 1;
            }
            let res = if is_sync {
                match res {
                    _ if state.broken_links.remove(&token) => -libc::ECANCELED,
                    0 => decide_sync(&mut state, &mut rng).map_or(0, |code| -code),
                    other => other,
                }
            } else {
                let injected = inject_write(&mut state, &mut rng, res);
                // A failed or short write breaks its link, as the kernel's own would: the
                // fdatasync queued after it is cancelled, not run. (Each write of a partition
                // has its own token, so writes in flight together do not mix their links.)
                if injected == res {
                    state.broken_links.remove(&token);
                } else {
                    state.broken_links.insert(token);
                }
                injected
            };
            state.put(key, rng);
            (res, slow)
        };
        maybe_slow(slow);
        res
    }

    fn uring_completed(
        &self,
        path: &Path,
        logical: std::ops::Range<u64>,
        done: &crate::io::uring::Completion,
    ) {
        let mut state = self.state();
        let model = state.files.entry(path.to_owned()).or_default();
        // Whatever the result said, the bytes may be in the file: unsynced until a sync.
        model.written(logical.start, logical.end);
        match &done.sync {
            crate::io::uring::SyncOutcome::Synced => model.synced(),
            crate::io::uring::SyncOutcome::Failed(_) => {
                model.sync_failed();
                state.failed_syncs.insert(stream_of(path));
            }
            _ => {}
        }
    }
}
