//! The server's start-up time and idle footprint, measured on a child process so that nothing
//! of the harness is in them: this binary started again as `rill-bench wire-server DIR`, which
//! opens a [`rill_server::Server`] with `rill serve`'s engine defaults on an ephemeral loopback
//! port, prints the address, and stops when its standard input closes.
//!
//! - start-up: from spawning the child to the answer to an ApiVersions request on its first
//!   accepted connection (process start, engine open and listener included);
//! - idle: with one client connected, the CPU spent in one second after a second's settling,
//!   then the resident memory, the mappings that hold it (from `/proc/<pid>/smaps`) and the
//!   threads.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kafka_protocol::messages::ApiVersionsRequest;
use rill_engine::EngineConfig;
use rill_server::client::Client;
use rill_server::{Server, ServerConfig};

use crate::report::ServerFacts;

/// How long the child may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server is left alone after its first answer before idle is measured.
const SETTLE: Duration = Duration::from_secs(1);
/// How long idle CPU is measured over, before the memory is read.
const IDLE: Duration = Duration::from_secs(1);

/// The child's side: serve `dir` until standard input closes.
pub fn serve_child(dir: &Path) -> anyhow::Result<()> {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::open(EngineConfig::new(dir), ServerConfig::new(vec![listen]), &[])
        .context("start the rill server")?;
    let addr = server
        .local_addrs()
        .first()
        .context("the server listens nowhere")?;
    println!("{addr}");
    // Blocks until the parent closes the pipe (or dies): no polling, no CPU.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    server.shutdown().context("stop the rill server")
}

/// Starts the child on the empty directory `dir` and measures it.
pub fn measure(dir: &Path) -> anyhow::Result<ServerFacts> {
    let exe = std::env::current_exe().context("find the rill-bench executable")?;
    let began = Instant::now();
    let mut child = Command::new(exe)
        .arg("wire-server")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the wire server child")?;
    let measured = measure_child(&mut child, began);
    // Closing its standard input stops the child; wait (bounded) for it to go.
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the wire server child did not stop");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    measured
}

fn measure_child(child: &mut Child, began: Instant) -> anyhow::Result<ServerFacts> {
    let stdout = child.stdout.take().context("the child's standard output")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let addr = rx
        .recv_timeout(START_TIMEOUT)
        .context("the wire server child did not start")?;
    let mut client = Client::connect(addr.trim(), Duration::from_secs(5))
        .context("connect to the wire server child")?;
    client
        .send(0, &ApiVersionsRequest::default())
        .context("ApiVersions")?;
    let startup = began.elapsed();
    let pid = child.id();
    // The shards spin briefly after start-up before they park: that is start-up, not idle.
    std::thread::sleep(SETTLE);
    let cpu_before = process_cpu_ns(pid);
    std::thread::sleep(IDLE);
    let cpu_after = process_cpu_ns(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    drop(client);
    Ok(ServerFacts {
        startup_ms: startup.as_secs_f64() * 1e3,
        idle_rss_mb: status_kib(&status, "VmRSS:") * 1024.0 / 1e6,
        idle_rss_by_mapping_mb: largest_mappings(pid, 6),
        idle_threads: status_kib(&status, "Threads:") as usize,
        idle_cpu_ms: cpu_after.saturating_sub(cpu_before) as f64 / 1e6,
    })
}

fn process_cpu_ns(pid: u32) -> u64 {
    crate::cpu::threads(Some(pid))
        .iter()
        .map(|t| t.cpu_ns)
        .sum()
}

/// A number field of `/proc/<pid>/status` (kB for the memory ones).
fn status_kib(status: &str, field: &str) -> f64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// Resident MB by mapping name (anonymous mappings as `[anon]`), the `n` largest.
fn largest_mappings(pid: u32, n: usize) -> Vec<(String, f64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_name: HashMap<String, f64> = HashMap::new();
    let mut current = String::new();
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: f64 = kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0.0);
            *by_name.entry(current.clone()).or_default() += kib * 1024.0 / 1e6;
        } else if is_mapping_header(line) {
            current = line
                .split_whitespace()
                .nth(5)
                .map_or_else(|| "[anon]".to_owned(), mapping_name);
        }
    }
    let mut out: Vec<(String, f64)> = by_name.into_iter().filter(|(_, mb)| *mb > 0.0).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out.truncate(n);
    out
}

/// Header lines of smaps start with an address range (`7f..-7f.. rw-p ...`).
fn is_mapping_header(line: &str) -> bool {
    line.split_whitespace().next().is_some_and(|range| {
        range.contains('-') && range.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    })
}

/// Files by their name only (no machine paths in reports).
fn mapping_name(path: &str) -> String {
    if path.starts_with('[') {
        return path.to_owned();
    }
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .map_or_else(|| path.to_owned(), str::to_owned)
}
