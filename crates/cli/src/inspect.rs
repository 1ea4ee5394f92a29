//! `rill verify DIR` and `rill topics DIR`: read-only looks at a data directory.
//!
//! Both take the directory's shared lock, so they refuse to run beside an engine that has it
//! open (its files are changing) rather than report a half-written state.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rill_engine::inspect::Inspector;
use rill_engine::record::Limits;

#[derive(Debug, Args)]
pub struct DirArgs {
    /// A rill data directory.
    pub dir: PathBuf,
}

/// Checks every partition; succeeds only when every one is sound.
pub fn verify(args: &DirArgs) -> anyhow::Result<()> {
    let inspector = open(args)?;
    let mut out = io::stdout().lock();
    let (mut partitions, mut batches, mut records, mut problems) = (0u64, 0u64, 0u64, 0usize);
    for partition in inspector.partitions()? {
        let check = inspector
            .verify(&partition)
            .with_context(|| format!("cannot check {partition}"))?;
        let verdict = if check.is_sound() { "ok" } else { "DAMAGED" };
        writeln!(
            out,
            "{partition}: {verdict}: {} segments, {} batches, {} records, offsets {}..{}",
            check.summary.segments,
            check.batches,
            check.records,
            check.summary.start_offset,
            check.summary.next_offset
        )?;
        for problem in &check.problems {
            writeln!(out, "  {problem}")?;
        }
        partitions += 1;
        batches += check.batches;
        records += check.records;
        problems += check.problems.len();
    }
    writeln!(
        out,
        "{partitions} partitions, {batches} batches, {records} records checked: {}",
        if problems == 0 {
            "all sound".to_owned()
        } else {
            format!("{problems} problems")
        }
    )?;
    out.flush()?;
    if problems > 0 {
        anyhow::bail!(
            "{} is damaged: {problems} problems found",
            args.dir.display()
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// A rill data directory.
    #[arg(required_unless_present = "bootstrap")]
    pub dir: Option<PathBuf>,

    /// Ask a Kafka broker (`rill serve`, or any Kafka) at HOST:PORT instead of opening a data
    /// directory (sizes are then not known).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "dir")]
    pub bootstrap: Option<String>,
}

/// Lists topics and partitions with their offsets and sizes.
pub fn topics(args: &TopicsArgs) -> anyhow::Result<()> {
    let dir = match (&args.bootstrap, &args.dir) {
        (Some(bootstrap), _) => return crate::remote::topics(bootstrap),
        (None, Some(dir)) => dir.clone(),
        (None, None) => anyhow::bail!("a data directory or --bootstrap is needed"),
    };
    let inspector = open(&DirArgs { dir })?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{:<40} {:>9} {:>14} {:>14} {:>14}",
        "TOPIC", "PARTITION", "FIRST", "NEXT", "BYTES"
    )?;
    for partition in inspector.partitions()? {
        let summary = inspector
            .summarize(&partition)
            .with_context(|| format!("cannot read {partition}"))?;
        writeln!(
            out,
            "{:<40} {:>9} {:>14} {:>14} {:>14}",
            partition.topic.as_str(),
            partition.partition,
            summary.start_offset,
            summary.next_offset,
            summary.size_bytes
        )?;
    }
    out.flush()?;
    Ok(())
}

fn open(args: &DirArgs) -> anyhow::Result<Inspector> {
    Inspector::open(&args.dir, Limits::default())
        .map_err(|error| crate::explain_lock(&args.dir, error))
}
