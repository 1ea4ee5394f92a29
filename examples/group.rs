//! A consumer group: two members on two threads share a topic's partitions, commit what they
//! processed, and a restarted group resumes from the commits.
//!
//! Run with `cargo run --example group`. Uses only the facade's root names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rill::{
    Engine, EngineConfig, Group, GroupConfig, GroupError, MemberConfig, ProducerRecord, StartFrom,
};

const PARTITIONS: u32 = 4;
const RECORDS: u64 = 2_000;

fn main() -> Result<(), AnyError> {
    let dir = std::env::temp_dir().join(format!("rill-group-{}", std::process::id()));
    let result = run(&dir);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn run(dir: &std::path::Path) -> Result<(), AnyError> {
    let engine = Engine::open(EngineConfig {
        shards: 1,
        pin_shards: false,
        ..EngineConfig::new(dir)
    })?;
    engine.create_topic("events", PARTITIONS)?;
    let mut producer = engine.producer("events")?;
    for i in 0..RECORDS {
        let key = i.to_be_bytes();
        producer.send(ProducerRecord::new(Some(&key), b"event"))?;
    }
    producer.flush()?;

    let config = GroupConfig {
        start: StartFrom::Earliest,
        ..GroupConfig::default()
    };
    // The group holds its own clone of the engine handle.
    let group = Group::new(&engine, "billing", config.clone())?;
    let consumed = AtomicU64::new(0);
    std::thread::scope(|scope| -> Result<(), AnyError> {
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let (group, consumed) = (&group, &consumed);
                scope.spawn(move || consume(worker, group, consumed))
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| "a member thread panicked")??;
        }
        Ok(())
    })?;
    let committed = committed_total(&group);
    println!(
        "the group processed {} records (at least once) and committed all {committed}",
        consumed.load(Ordering::Relaxed)
    );
    if committed != RECORDS {
        return Err(format!("committed {committed} of {RECORDS}").into());
    }
    drop(group);

    // A new group object with the same id resumes from the commits: nothing left to read.
    let group = Group::new(&engine, "billing", config)?;
    let committed = committed_total(&group);
    println!("a restarted group resumes at offsets that add up to {committed}");
    if committed != RECORDS {
        return Err(format!("committed {committed}, expected {RECORDS}").into());
    }
    drop(group);
    engine.shutdown()?;
    Ok(())
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// One member: poll, process, commit, until the group has committed every record.
fn consume(worker: usize, group: &Group, consumed: &AtomicU64) -> Result<(), AnyError> {
    let mut member = group.join(MemberConfig::new(["events"]))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed_total(group) < RECORDS {
        if Instant::now() > deadline {
            return Err("the group did not commit every record within 20 s".into());
        }
        let polled = member.poll(Duration::from_millis(50))?;
        let count = polled.for_each_record(|_topic, _partition, record| {
            let _ = record.value;
        })?;
        consumed.fetch_add(count, Ordering::Relaxed);
        match member.commit_sync(polled.offsets()) {
            Ok(()) => {}
            // A rebalance moved a partition between the poll and the commit: its new owner
            // reads again from the last commit (at-least-once), so this member moves on.
            Err(GroupError::StaleMemberEpoch { .. } | GroupError::NotOwner { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    println!("member {worker} ends owning {:?}", member.assignment());
    Ok(member.leave()?)
}

/// The sum of the group's committed offsets: the records it has committed, over partitions
/// that start at offset 0.
fn committed_total(group: &Group) -> u64 {
    let sum: i64 = group.committed_offsets().values().sum();
    u64::try_from(sum).unwrap_or(0)
}
