//! `rill verify` and `rill topics` on data directories written by the engine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rill_engine::log::LogConfig;
use rill_engine::record::{BatchBuilder, Compression};
use rill_engine::store::Store;

/// Runs `rill`, one child at a time in this test binary.
///
/// The tests here open stores in this process and spawn `rill` beside them. A child forked
/// while another test holds its store keeps a copy of that store's lock descriptor until it
/// execs (flock locks belong to the open file, which fork shares), so that test's next `rill`
/// could find its own, already dropped, store still locked. Spawning under one mutex means
/// every child forked earlier has exec'd and exited before the next spawn.
fn rill(args: &[&str]) -> Output {
    static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SPAWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn populated(root: &Path) {
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let store = Store::open(root, config).unwrap();
    let orders = store.create_topic("orders", 2).unwrap();
    store.create_topic("audit.log", 1).unwrap();
    let mut log = store.open_partition(&orders, 1).unwrap();
    for i in 0..300u32 {
        let mut builder = BatchBuilder::new(Compression::Zstd);
        for j in 0..10u32 {
            builder
                .append(
                    i64::from(i),
                    Some(&j.to_be_bytes()),
                    Some(&[(i % 251) as u8; 500]),
                    &[],
                )
                .unwrap();
        }
        log.append(&mut builder.build().unwrap()).unwrap();
    }
}

fn first_segment(root: &Path) -> PathBuf {
    root.join("orders-1/00000000000000000000.log")
}

#[test]
fn verify_passes_a_clean_directory() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let out = rill(&["verify", dir.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("orders-1: ok:"), "{stdout}");
    assert!(
        stdout.contains("3 partitions, 300 batches, 3000 records checked: all sound"),
        "{stdout}"
    );
}

#[test]
fn verify_fails_and_names_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let segment = first_segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    bytes[500] ^= 0x01;
    fs::write(&segment, bytes).unwrap();
    let out = rill(&["verify", dir.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("orders-1: DAMAGED"), "{stdout}");
    let problem = stdout
        .lines()
        .find(|l| l.contains("00000000000000000000.log at byte "))
        .unwrap_or_default();
    let position: u64 = problem
        .split("at byte ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte position in {stdout}"));
    assert!(
        position <= 500 && problem.contains("CRC-32C mismatch"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("damaged"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn topics_lists_offsets_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let out = rill(&["topics", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert_eq!(&rows[0][..4], ["audit.log", "0", "0", "0"]);
    assert_eq!(&rows[1][..4], ["orders", "0", "0", "0"]);
    assert_eq!(&rows[2][..4], ["orders", "1", "0", "3000"]);
    let size: u64 = rows[2][4].parse().unwrap();
    assert_eq!(size, fs::metadata(first_segment(dir.path())).unwrap().len());
}

#[test]
fn inspection_refuses_a_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path(), LogConfig::default()).unwrap();
    for command in ["verify", "topics"] {
        let out = rill(&[command, dir.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("already open"),
            "{}",
            text(&out.stderr)
        );
    }
    let missing = dir.path().join("missing");
    let out = rill(&["verify", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}
