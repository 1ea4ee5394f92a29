//! `rill`: produce, consume and inspect rill data from the shell.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rill_engine::engine::{Engine, EngineConfig};

/// Requests from untrusted peers can make the wire codec ask for huge allocations up front;
/// this allocator reserves those lazily instead of aborting (see `rill_server::alloc`).
#[global_allocator]
static ALLOC: rill_server::ReserveLazily = rill_server::ReserveLazily;

mod consume;
mod dump;
mod inspect;
mod logger;
mod produce;
mod remote;
mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "rill",
    version,
    about = "Produce to, consume from and inspect rill data directories and Kafka RecordBatch v2 files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append each line of stdin to a topic as a record, creating the directory and topic if
    /// missing.
    ///
    /// Ends at the end of input (Ctrl-D when typing), closing the directory cleanly; an
    /// interrupt kills it, and the next open of the directory recovers it.
    Produce(produce::ProduceArgs),
    /// Print a topic's records as JSON lines (`rill dump`'s, with the partition first).
    Consume(consume::ConsumeArgs),
    /// Print every record of a segment file (batches laid end to end) as JSON lines.
    Dump(dump::DumpArgs),
    /// Check a data directory: every batch's CRC, dense offsets, index agreement. Exits 0 only
    /// when everything is sound.
    Verify(inspect::DirArgs),
    /// List topics and partitions with their first and next offsets and sizes.
    Topics(inspect::TopicsArgs),
    /// Serve a data directory to Kafka clients over Kafka's wire protocol, until SIGINT or
    /// SIGTERM (then every partition is synced and closed cleanly).
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Verify(args) => inspect::verify(args),
        Command::Topics(args) => inspect::topics(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`rill dump … | head`): there is nobody left to tell, and what it
        // asked for it got.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // If stderr is gone too there is nothing better to do than exit non-zero.
            let _ = writeln!(io::stderr().lock(), "rill: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The engine as one short-lived command runs it: a single shard, because a command moves few
/// records and should not start a thread per core, and no pinning, because it shares the
/// machine with whatever else runs there.
fn open_engine(dir: &Path) -> anyhow::Result<Engine> {
    Engine::open(EngineConfig {
        shards: 1,
        pin_shards: false,
        ..EngineConfig::new(dir)
    })
    .map_err(|error| explain_lock(dir, error))
}

/// A directory locked by `rill serve` is not an error to report bare: it says which server
/// holds it and where Kafka clients (and this tool, with `--bootstrap`) can reach it.
fn explain_lock(dir: &Path, error: rill_engine::Error) -> anyhow::Error {
    if matches!(error, rill_engine::Error::DirectoryLocked { .. })
        && let Some(holder) = rill_server::holder::read(dir)
    {
        return anyhow::anyhow!(
            "{} is held by a running `rill serve` (pid {}); reach it with --bootstrap {} \
             (or stop it to use the directory directly)",
            dir.display(),
            holder.pid,
            holder.advertise
        );
    }
    anyhow::Error::new(error).context(format!("cannot open {}", dir.display()))
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
