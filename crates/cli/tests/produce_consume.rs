//! `rill produce` and `rill consume`, run as the built binary with stdin and stdout piped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroU32;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rill_engine::key_partition;
use serde_json::Value;

/// Longest a test waits for a line the binary should print; far above what a loaded machine
/// needs, only there so a regression fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

fn spawn(args: &[&str], dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rill"))
        .arg(args[0])
        .arg(dir)
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `rill ARGS[0] DIR ARGS[1..]` with `input` on stdin.
fn rill(args: &[&str], dir: &Path, input: &[u8]) -> Output {
    let mut child = spawn(args, dir);
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // From another thread: a child blocked writing a full stdout pipe would never drain stdin.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    match writer.join().unwrap() {
        // A command that fails early (a bad argument) need not read its input.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    output
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn failed(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `--print-offsets` output as (partition, offset) pairs.
fn offsets(text: &str) -> Vec<(u32, i64)> {
    text.lines()
        .map(|line| {
            let (partition, offset) = line.split_once(' ').unwrap();
            (partition.parse().unwrap(), offset.parse().unwrap())
        })
        .collect()
}

/// `rill consume` output as (partition, offset) → (key, value), both hex or `None`.
type Records = BTreeMap<(u32, i64), (Option<String>, Option<String>)>;

fn records(text: &str) -> Records {
    let mut records = Records::new();
    for line in text.lines() {
        assert!(line.starts_with("{\"partition\":"), "{line}");
        let json: Value = serde_json::from_str(line).unwrap();
        let hex = |name: &str| json[name].as_str().map(str::to_owned);
        let at = (
            json["partition"].as_u64().unwrap() as u32,
            json["offset"].as_i64().unwrap(),
        );
        assert!(
            records.insert(at, (hex("key"), hex("value"))).is_none(),
            "{at:?} twice"
        );
    }
    records
}

fn verify(dir: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_rill"))
        .arg("verify")
        .arg(dir)
        .output()
        .unwrap();
    succeeded(&output);
}

/// Lines of a child's stdout, read on a thread so a test can wait for them with a timeout.
fn lines_of(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if send.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    receive
}

#[test]
fn keyed_lines_go_where_kafka_puts_them_and_read_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let four = NonZeroU32::new(4).unwrap();
    let lines: Vec<String> = (0..1000)
        .map(|i| format!("user-{}:event {i}: a=b", i % 37))
        .collect();
    let input = lines.join("\n") + "\n";

    let printed = succeeded(&rill(
        &[
            "produce",
            "clicks",
            "--partitions",
            "4",
            "--key-sep",
            ":",
            "--print-offsets",
        ],
        &dir,
        input.as_bytes(),
    ));
    let placed = offsets(&printed);
    assert_eq!(placed.len(), 1000, "{printed}");
    let mut next = [0i64; 4];
    for (line, &(partition, offset)) in lines.iter().zip(&placed) {
        let key = line.split_once(':').unwrap().0;
        assert_eq!(partition, key_partition(key.as_bytes(), four), "{line}");
        assert_eq!(
            offset, next[partition as usize],
            "{line}: offsets are dense"
        );
        next[partition as usize] += 1;
    }
    assert!(next.iter().all(|&count| count > 0), "{next:?}");
    let consumed = records(&succeeded(&rill(
        &["consume", "clicks", "--from-beginning"],
        &dir,
        b"",
    )));
    let expected: Records = lines
        .iter()
        .zip(&placed)
        .map(|(line, &at)| {
            let (key, value) = line.split_once(':').unwrap();
            (at, (Some(hex::encode(key)), Some(hex::encode(value))))
        })
        .collect();
    assert_eq!(consumed, expected);

    // Kafka's default start is the end: nothing new has come, so nothing is printed.
    assert_eq!(succeeded(&rill(&["consume", "clicks"], &dir, b"")), "");

    // A second run appends after the first, to the topic as it exists (no --partitions), and
    // waits for durability.
    let more: Vec<String> = (0..100).map(|i| format!("user-{i}:more {i}")).collect();
    let printed = succeeded(&rill(
        &[
            "produce",
            "clicks",
            "--key-sep",
            ":",
            "--ack",
            "durable",
            "--print-offsets",
        ],
        &dir,
        more.join("\n").as_bytes(),
    ));
    let placed = offsets(&printed);
    assert_eq!(placed.len(), 100, "{printed}");
    for (line, &(partition, offset)) in more.iter().zip(&placed) {
        let key = line.split_once(':').unwrap().0;
        assert_eq!(partition, key_partition(key.as_bytes(), four), "{line}");
        assert_eq!(offset, next[partition as usize], "{line}: offsets continue");
        next[partition as usize] += 1;
    }
    let consumed = succeeded(&rill(&["consume", "clicks", "--from-beginning"], &dir, b""));
    assert_eq!(consumed.lines().count(), 1100);
    verify(&dir);
}

#[test]
fn any_bytes_round_trip_and_a_last_line_needs_no_newline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lines: [&[u8]; 6] = [
        b"\xff\xfe not utf-8 \x80",
        b"",
        b"nul \x00 inside, cr at the end\r",
        b"k\x00=v=w",
        b"\xc3\x28=\xa0\xa1",
        b"no newline after me",
    ];
    let input = lines.join(&b'\n');
    let printed = succeeded(&rill(
        &[
            "produce",
            "bytes",
            "--key-sep",
            "=",
            "--ack",
            "appended",
            "--print-offsets",
        ],
        dir,
        &input,
    ));
    let expected_offsets: Vec<(u32, i64)> = (0..6).map(|offset| (0, offset)).collect();
    assert_eq!(offsets(&printed), expected_offsets);

    let consumed = records(&succeeded(&rill(
        &["consume", "bytes", "--from-beginning"],
        dir,
        b"",
    )));
    let values: Vec<(Option<String>, Option<String>)> = consumed.into_values().collect();
    let expected: Vec<(Option<String>, Option<String>)> = lines
        .iter()
        .map(|line| match line.iter().position(|&b| b == b'=') {
            Some(at) => (
                Some(hex::encode(&line[..at])),
                Some(hex::encode(&line[at + 1..])),
            ),
            None => (None, Some(hex::encode(line))),
        })
        .collect();
    assert_eq!(values, expected);
    verify(dir);
}

#[test]
fn bad_topic_names_fail_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let message = failed(&rill(&["produce", "../x"], &dir, b"line\n"));
    assert!(message.contains("invalid topic name"), "{message}");
    let message = failed(&rill(&["consume", "../x"], &dir, b""));
    assert!(message.contains("invalid topic name"), "{message}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // Consuming from a directory that is not there does not create it either.
    let message = failed(&rill(&["consume", "t"], &dir, b""));
    assert!(message.contains("not a rill data directory"), "{message}");
    assert!(!dir.exists());
}

#[test]
fn another_partition_count_for_an_existing_topic_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    succeeded(&rill(
        &["produce", "t", "--partitions", "2"],
        tmp.path(),
        b"a\n",
    ));
    let message = failed(&rill(
        &["produce", "t", "--partitions", "3"],
        tmp.path(),
        b"b\n",
    ));
    assert!(
        message.contains("already exists with 2 partitions"),
        "{message}"
    );
    let consumed = succeeded(&rill(
        &["consume", "t", "--from-beginning"],
        tmp.path(),
        b"",
    ));
    assert_eq!(consumed.lines().count(), 1, "{consumed}");
}

#[test]
fn typed_lines_are_acknowledged_at_once_and_a_second_process_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut typing = spawn(&["produce", "t", "--print-offsets"], dir);
    let mut keyboard = typing.stdin.take().unwrap();
    let printed = lines_of(typing.stdout.take().unwrap());
    for offset in 0..3 {
        // One line, and the pipe stays open: its offset must come without more input or EOF.
        writeln!(keyboard, "line {offset}").unwrap();
        keyboard.flush().unwrap();
        assert_eq!(
            printed.recv_timeout(PATIENCE).unwrap(),
            format!("0 {offset}")
        );
    }

    let message = failed(&rill(&["produce", "t"], dir, b"intruder\n"));
    assert!(message.contains("already open"), "{message}");
    let message = failed(&rill(&["consume", "t"], dir, b""));
    assert!(message.contains("already open"), "{message}");

    drop(keyboard);
    let output = typing.wait_with_output().unwrap();
    succeeded(&output);
    let consumed = records(&succeeded(&rill(
        &["consume", "t", "--from-beginning"],
        dir,
        b"",
    )));
    assert_eq!(consumed.len(), 3);
    verify(dir);
}

#[test]
fn every_line_is_produced_even_when_the_offsets_reader_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut producer = spawn(&["produce", "t", "--print-offsets"], dir);
    let mut stdin = producer.stdin.take().unwrap();
    let input: String = (0..50_000).map(|i| format!("{i}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut offsets = BufReader::new(producer.stdout.take().unwrap());
    let mut first = String::new();
    offsets.read_line(&mut first).unwrap();
    assert_eq!(first, "0 0\n");
    // As `| head -1` would: the reader is gone while most offsets are still to come.
    drop(offsets);
    writer.join().unwrap().unwrap();
    succeeded(&producer.wait_with_output().unwrap());
    let consumed = succeeded(&rill(&["consume", "t", "--from-beginning"], dir, b""));
    assert_eq!(consumed.lines().count(), 50_000);
}

/// Only one process may hold a directory, so `--follow` cannot be shown picking up another
/// producer's records; what it can be shown doing is reading to the end and staying there,
/// then closing the directory cleanly when interrupted.
#[cfg(unix)]
#[test]
fn follow_stays_at_the_end_until_interrupted_and_closes_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let input: String = (0..50).map(|i| format!("{i}:value {i}\n")).collect();
    succeeded(&rill(
        &["produce", "t", "--partitions", "3", "--key-sep", ":"],
        dir,
        input.as_bytes(),
    ));

    let mut follower = spawn(&["consume", "t", "--from-beginning", "--follow"], dir);
    let printed = lines_of(follower.stdout.take().unwrap());
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.push(printed.recv_timeout(PATIENCE).unwrap());
    }
    assert_eq!(records(&seen.join("\n")).len(), 50);

    std::thread::sleep(Duration::from_millis(500));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "--follow exited at the end of the log"
    );
    let interrupt = Command::new("sh")
        .args(["-c", "kill -INT \"$1\"", "sh"])
        .arg(follower.id().to_string())
        .status()
        .unwrap();
    assert!(interrupt.success());
    let output = follower.wait_with_output().unwrap();
    succeeded(&output);
    assert!(printed.recv_timeout(PATIENCE).is_err(), "no more records");
    // A killed engine would leave zero-filled segment tails that verify reports.
    verify(dir);
}
