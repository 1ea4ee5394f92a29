//! A real failed `fdatasync`, seen from outside: `rill produce --ack durable --print-offsets`
//! on the portable backend, fed lines while one `fdatasync` of a segment returns `EIO`.
//!
//! The failure comes from a tiny shared library compiled here with `cc` and preloaded into
//! the child: it fails the n-th `fdatasync` of a file whose name ends in `.log` and lets every
//! other call through. Without a C compiler the test says so and skips.
//!
//! Expected: the command ends promptly, non-zero, naming the partition and the error; no
//! record is acknowledged after the failure; after a reopen every acknowledged record is there.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: the command should end within a fraction of a second of the failure.
const PROMPTLY: Duration = Duration::from_secs(30);
const LINES: usize = 400;

const FAIL_FDATASYNC: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int seen;

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    const char *suffix = getenv("FAIL_FDATASYNC_SUFFIX");
    const char *nth = getenv("FAIL_FDATASYNC_NTH");
    if (n > 0 && suffix && nth) {
        path[n] = 0;
        size_t s = strlen(suffix);
        if ((size_t)n >= s && strcmp(path + n - s, suffix) == 0 && ++seen == atoi(nth)) {
            errno = EIO;
            return -1;
        }
    }
    return real(fd);
}
"#;

/// Builds the preload library in `dir`, or says why it cannot.
fn build_preload(dir: &Path) -> Result<PathBuf, String> {
    let source = dir.join("fail_fdatasync.c");
    let library = dir.join("libfail_fdatasync.so");
    std::fs::write(&source, FAIL_FDATASYNC).map_err(|e| e.to_string())?;
    let output = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .map_err(|e| format!("no C compiler (cc): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cc failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(library)
}

#[test]
fn a_failed_fdatasync_ends_produce_with_an_error_and_loses_no_ack() {
    let scratch = tempfile::tempdir().unwrap();
    let library = match build_preload(scratch.path()) {
        Ok(library) => library,
        Err(why) => {
            eprintln!("skipped the failed-fdatasync test: {why}");
            return;
        }
    };
    let data = scratch.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["produce"])
        .arg(&data)
        .args(["t", "--ack", "durable", "--print-offsets"])
        .env("RILL_IO", "sync")
        .env("LD_PRELOAD", &library)
        .env("FAIL_FDATASYNC_SUFFIX", ".log")
        .env("FAIL_FDATASYNC_NTH", "5")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Lines in small groups with pauses, so that each group is its own batch and sync.
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for group in 0..LINES / 10 {
            let mut text = String::new();
            for i in group * 10..group * 10 + 10 {
                text.push_str(&format!("line {i}\n"));
            }
            if stdin.write_all(text.as_bytes()).is_err() {
                return; // the command ended: that is the point
            }
            let _ = stdin.flush();
            std::thread::sleep(Duration::from_millis(15));
        }
    });
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|line| line.unwrap())
            .collect::<Vec<_>>()
    });

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PROMPTLY {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rill produce did not end within {PROMPTLY:?} of a failed fdatasync");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    feeder.join().unwrap();
    let printed = reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();

    assert!(
        !status.success(),
        "rill produce exited 0 after a failed fdatasync"
    );
    assert!(
        stderr.contains("t-0") && stderr.contains("Input/output error"),
        "the error names neither the partition nor the OS error: {stderr}"
    );

    // Offsets are printed in input order: the k-th printed line is the k-th input line.
    let acked: Vec<i64> = printed
        .iter()
        .map(|line| {
            let (partition, offset) = line.split_once(' ').unwrap();
            assert_eq!(partition, "0");
            offset.parse().unwrap()
        })
        .collect();
    assert!(
        acked.len() < LINES,
        "every line was acknowledged: the failed fdatasync never reached a ticket"
    );
    assert!(!acked.is_empty(), "nothing acknowledged before the failure");
    assert_eq!(
        acked,
        (0..acked.len() as i64).collect::<Vec<_>>(),
        "acknowledgements stop at the failure"
    );

    // After a reopen (without the fault), every acknowledged record is there.
    let output = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["consume"])
        .arg(&data)
        .args(["t", "--from-beginning"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let back: Vec<(i64, String)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            let value = hex::decode(record["value"].as_str().unwrap()).unwrap();
            (
                record["offset"].as_i64().unwrap(),
                String::from_utf8(value).unwrap(),
            )
        })
        .collect();
    for (k, offset) in acked.iter().enumerate() {
        assert_eq!(
            back.get(k),
            Some(&(*offset, format!("line {k}"))),
            "acknowledged record {offset} is not back after a reopen"
        );
    }
}
