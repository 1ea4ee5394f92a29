//! `rill`: inspect rill data from the shell.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod dump;
mod inspect;

#[derive(Debug, Parser)]
#[command(
    name = "rill",
    version,
    about = "Inspect rill data directories and Kafka RecordBatch v2 files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every record of a segment file (batches laid end to end) as JSON lines.
    Dump(dump::DumpArgs),
    /// Check a data directory: every batch's CRC, dense offsets, index agreement. Exits 0 only
    /// when everything is sound.
    Verify(inspect::DirArgs),
    /// List topics and partitions with their first and next offsets and sizes.
    Topics(inspect::DirArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Dump(args) => dump::run(args),
        Command::Verify(args) => inspect::verify(args),
        Command::Topics(args) => inspect::topics(args),
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

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
