//! `rill consume DIR TOPIC`: a topic's records as JSON lines, in the spirit of Kafka's
//! `kafka-console-consumer`.
//!
//! Lines are `rill dump`'s with the partition first, so tools written for one read the other.
//! Like Kafka's consumer it starts at the end of the log unless told `--from-beginning`, and
//! like `tail` it stops at the end unless told `--follow`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rill_engine::consumer::{Consumer, ConsumerConfig, StartFrom};
use rill_engine::engine::Engine;
use rill_engine::topic::TopicName;

use crate::dump::write_record;

/// Longest wait of one poll: how late an interrupt is noticed while no records arrive.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// A rill data directory.
    pub dir: PathBuf,

    /// The topic to read; every partition is read. With `--bootstrap`, the only positional
    /// argument: `rill consume --bootstrap HOST:PORT TOPIC`.
    #[arg(required_unless_present = "bootstrap")]
    pub topic: Option<String>,

    /// Read from a Kafka broker (`rill serve`, or any Kafka) at HOST:PORT instead of opening a
    /// data directory.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,

    /// Start at the first record kept instead of the end of the log.
    #[arg(long)]
    pub from_beginning: bool,

    /// Keep waiting for records at the end of the log until interrupted, instead of exiting.
    #[arg(long)]
    pub follow: bool,
}

impl ConsumeArgs {
    /// The topic: the second positional argument, or with `--bootstrap` the only one.
    pub fn topic(&self) -> &str {
        match &self.topic {
            Some(topic) => topic,
            None => self.dir.to_str().unwrap_or_default(),
        }
    }
}

pub fn run(args: &ConsumeArgs) -> anyhow::Result<()> {
    if let Some(bootstrap) = &args.bootstrap {
        TopicName::new(args.topic())?;
        interrupt::catch().context("cannot handle interrupts")?;
        return crate::remote::consume(
            bootstrap,
            args.topic(),
            args.from_beginning,
            args.follow,
            &interrupt::requested,
        );
    }
    TopicName::new(args.topic())?;
    // Opening the engine creates a missing directory; a reader must not leave an empty data
    // directory behind because of a typo.
    if !args.dir.is_dir() {
        anyhow::bail!("{} is not a rill data directory", args.dir.display());
    }
    // Before the engine opens: an interrupt from then on ends the loop below, and the engine
    // closes the directory clean. The default action would kill the process and leave every
    // partition needing recovery (and `rill verify` reporting it) though nothing was written.
    interrupt::catch().context("cannot handle interrupts")?;
    let engine = crate::open_engine(&args.dir)?;
    let consumed = consume(&engine, args);
    let closed = engine
        .shutdown()
        .with_context(|| format!("cannot close {} cleanly", args.dir.display()));
    consumed?;
    closed
}

fn consume(engine: &Engine, args: &ConsumeArgs) -> anyhow::Result<()> {
    let start = if args.from_beginning {
        StartFrom::Earliest
    } else {
        StartFrom::Latest
    };
    let mut consumer = assigned(engine, args.topic(), start)?;
    // No other process can append while this one holds the directory, so the end seen now is
    // the end of the log.
    let ends = if args.follow {
        None
    } else {
        let latest = assigned(engine, args.topic(), StartFrom::Latest)?;
        Some(positions(&latest))
    };
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    loop {
        if let Some(ends) = &ends
            && reached(&consumer, ends)
        {
            return Ok(());
        }
        if interrupt::requested() {
            // `--follow` has no other way to end; a read to the end stopped short of it.
            if args.follow {
                return Ok(());
            }
            anyhow::bail!("interrupted before the end of the log");
        }
        let polled = consumer.poll(POLL_TIMEOUT)?;
        let mut written = Ok(());
        polled.for_each_record(|partition, record| {
            if written.is_ok() {
                written = write_record(&mut out, Some(partition), &record);
            }
        })?;
        written?;
        // Per poll, not per record: a follower shows new records at once, a full read still
        // writes in large chunks.
        out.flush()?;
    }
}

fn assigned(engine: &Engine, topic: &str, start: StartFrom) -> anyhow::Result<Consumer> {
    let mut consumer = engine.consumer_with(
        topic,
        ConsumerConfig {
            start,
            ..ConsumerConfig::default()
        },
    )?;
    consumer.assign_all()?;
    Ok(consumer)
}

/// The consumer's position in each partition, indexed by partition.
fn positions(consumer: &Consumer) -> Vec<i64> {
    (0..consumer.partitions())
        .map(|partition| consumer.position(partition).unwrap_or(0))
        .collect()
}

fn reached(consumer: &Consumer, ends: &[i64]) -> bool {
    positions(consumer)
        .iter()
        .zip(ends)
        .all(|(position, end)| position >= end)
}

/// SIGINT and SIGTERM as a request to stop, so `--follow` (or a long read) ends with the engine
/// shut down properly.
#[cfg(unix)]
mod interrupt {
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering};

    static REQUESTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn note(_signal: libc::c_int) {
        // An atomic store is all a signal handler may safely do here.
        REQUESTED.store(true, Ordering::Relaxed);
    }

    pub fn catch() -> io::Result<()> {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: `sigaction` is a plain C struct for which all zeroes is a valid value (no
            // handler, empty mask, no flags); every field that matters is set below.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // One-shot: if shutting down hangs, a second Ctrl-C kills the process as usual.
            // Restarting interrupted calls keeps blocking reads and writes out of EINTR.
            action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            // SAFETY: `sa_mask` is a valid `sigset_t` owned by `action`; emptying it cannot fail.
            unsafe { libc::sigemptyset(&mut action.sa_mask) };
            // SAFETY: `action` is fully initialized and outlives the call; the handler only
            // stores to an atomic, which is async-signal-safe. The old action is not wanted.
            if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    pub fn requested() -> bool {
        REQUESTED.load(Ordering::Relaxed)
    }
}

/// Elsewhere an interrupt keeps its default action: the process ends at once.
#[cfg(not(unix))]
mod interrupt {
    pub fn catch() -> std::io::Result<()> {
        Ok(())
    }

    pub fn requested() -> bool {
        false
    }
}
