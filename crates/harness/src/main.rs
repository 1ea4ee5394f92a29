//! `rill-bench`: drives the rill engine until it saturates and puts every figure beside what
//! this machine can do (the disk and memory ceilings, measured in the same run) and what peers
//! do with the same records.
//!
//! With no subcommand it runs the whole suite in a temporary directory and prints one table;
//! `--quick` shrinks every scenario to seconds for CI. Each subcommand runs one scenario
//! family, and the knobs override the suite's settings.
//!
//! The `rate` family (`rill-bench rate`) is the open loop: `rate 100k/s 1KiB`, then latency
//! at a trickle ([`trickle`]): 100-byte records at 10,000 records/s with the engine's
//! defaults, with `linger 0`, with `linger 0` through the page cache and with `Appended`
//! visibility, then at half the maximum sustainable rate (half the run's `produce 100B`,
//! which the family runs first when the plan left it out) with `Appended` and with `Written`
//! through the page cache. Those rows report CPU as a share of one core (`cpu_cores`) and
//! the project's targets beside the figures; `--quick` runs only the `Appended` trickle row.

mod cache;
mod ceiling;
mod charts;
mod cpu;
mod figures;
mod machine;
mod measure;
mod peers;
mod report;
mod rounds;
mod save;
mod scenario;
mod spec;
mod suite;
mod summary;
mod table;
mod trickle;
mod validate;
mod workdir;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rill-bench",
    version,
    about = "Load harness for the rill log engine: scenarios, ceilings and peers in one run"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Data directory to run in (default: a temporary directory, removed afterwards). Put it
    /// on the disk you want to measure.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// A few seconds per scenario instead of the full amounts: for CI, not for quoting.
    #[arg(long, global = true)]
    quick: bool,
    /// Write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Keep the report, a Markdown summary and charts in a dated folder under this directory.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "bench-results")]
    save: Option<PathBuf>,
    #[command(flatten)]
    knobs: spec::Knobs,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
enum Command {
    /// Every scenario and peer (the default).
    Suite,
    /// Producers send as fast as the engine takes records (then reads them back, to check).
    Produce,
    /// Reads back what producers wrote, from the start of the log.
    Consume,
    /// Producers and consumers at once; latency from send to the consumer.
    E2e,
    /// Producers waiting for fsync acknowledgements (group commit).
    Durable,
    /// A consumer group drains a topic while a member joins and another leaves.
    Group,
    /// Open loop at a fixed rate (`--rate`): latency without coordinated omission; then the
    /// latency-at-a-trickle rows (100 B at 10,000 records/s, and at half the produce rate),
    /// whose defining settings the knobs do not change.
    Rate,
    /// The peer crates alone, on the suite's workloads.
    Peers,
    /// Produce, consume and end to end through librdkafka and a rill server over loopback,
    /// and the server's start-up time and idle memory (needs the `wire` feature).
    Wire,
    /// The server the wire scenarios measure as a child process; stops when stdin closes.
    #[command(hide = true)]
    WireServer {
        /// Data directory to serve.
        dir: PathBuf,
    },
    /// Checks a JSON report (from `--json`) for every promised field and for lost records.
    Validate {
        /// The report to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("rill-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false): the run finished but something failed its checks (lost records, a bad report).
fn run(args: &Args) -> anyhow::Result<bool> {
    args.knobs.check()?;
    let command = args.command.clone().unwrap_or(Command::Suite);
    if let Command::Validate { file } = &command {
        return validate(file);
    }
    if let Command::WireServer { dir } = &command {
        return wire_server(dir);
    }
    let temp;
    let root = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("rill-bench-")
                .tempdir()
                .context("create a temporary data directory")?;
            temp.path().to_owned()
        }
    };
    let plan = suite::Plan {
        only: suite_filter(&command),
        quick: args.quick,
        knobs: args.knobs.clone(),
    };
    let report = suite::run(&root, &plan)?;
    table::print(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("serialise the report")?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(under) = &args.save {
        let command_line = std::env::args().collect::<Vec<_>>().join(" ");
        let folder = save::save(&report, under, &command_line)?;
        eprintln!("report, summary and charts saved in {}", folder.display());
    }
    let problems = validate::problems(&serde_json::to_value(&report)?);
    let lost: Vec<&String> = problems.iter().filter(|p| p.contains("lost")).collect();
    for problem in &lost {
        eprintln!("rill-bench: FAILED: {problem}");
    }
    Ok(lost.is_empty())
}

fn suite_filter(command: &Command) -> Option<suite::Only> {
    match command {
        Command::Suite | Command::Validate { .. } | Command::WireServer { .. } => None,
        Command::Produce | Command::Consume => Some(suite::Only::Throughput),
        Command::E2e => Some(suite::Only::E2e),
        Command::Durable => Some(suite::Only::Durable),
        Command::Group => Some(suite::Only::Group),
        Command::Rate => Some(suite::Only::Rate),
        Command::Peers => Some(suite::Only::Peers),
        Command::Wire => Some(suite::Only::Wire),
    }
}

#[cfg(feature = "wire")]
fn wire_server(dir: &std::path::Path) -> anyhow::Result<bool> {
    scenario::wire::facts::serve_child(dir)?;
    Ok(true)
}

#[cfg(not(feature = "wire"))]
fn wire_server(_: &std::path::Path) -> anyhow::Result<bool> {
    anyhow::bail!("rill-bench was built without the `wire` feature")
}

fn validate(file: &std::path::Path) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", file.display()))?;
    let problems = validate::problems(&value);
    for problem in &problems {
        eprintln!("{}: {problem}", file.display());
    }
    if problems.is_empty() {
        println!("{}: complete, no lost records", file.display());
    }
    Ok(problems.is_empty())
}
