//! Listeners, connections, and a clean stop.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rill_engine::{Engine, EngineConfig};

use crate::broker::Broker;
use crate::config::ServerConfig;
use crate::connection;
use crate::error::Error;
use crate::holder::{self, Holder};

/// How long a stop waits for connections to finish what they are doing (a long poll, an ack).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections, so a stop can close them and wait for them.
#[derive(Debug, Default)]
struct Live {
    streams: Mutex<HashMap<u64, TcpStream>>,
    drained: Condvar,
    next_id: AtomicU64,
    stopping: AtomicBool,
}

/// A running server: its listeners' threads, and the broker they share.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    local: Vec<SocketAddr>,
    accepting: Vec<JoinHandle<()>>,
    live: Arc<Live>,
    data_dir: PathBuf,
}

impl Server {
    /// Opens the data directory, binds every listener, and starts accepting connections.
    ///
    /// A listener in `optional` that cannot be bound is skipped with a warning (the default
    /// `[::1]` listener on a machine without IPv6); one in `config.listen` is an error.
    pub fn open(
        engine: EngineConfig,
        config: ServerConfig,
        optional: &[SocketAddr],
    ) -> Result<Server, Error> {
        let data_dir = engine.data_dir.clone();
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let listener = TcpListener::bind(addr).map_err(|source| Error::Listen {
                addr: *addr,
                source,
            })?;
            listeners.push(listener);
        }
        for addr in optional {
            match TcpListener::bind(addr) {
                Ok(listener) => listeners.push(listener),
                Err(error) => log::warn!("not listening on {addr}: {error}"),
            }
        }
        let local: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        if local.is_empty() {
            return Err(Error::Config {
                reason: "no address to listen on".into(),
            });
        }
        let engine = Engine::open(engine)?;
        let mut config = config;
        config.listen = local.clone();
        let broker = Arc::new(Broker::new(engine, config, cluster_id(&data_dir)));
        let (host, port) = broker.advertised.clone();
        holder::write(
            &data_dir,
            &Holder {
                pid: std::process::id(),
                listen: local.clone(),
                advertise: format!("{host}:{port}"),
            },
        )?;
        let live = Arc::new(Live::default());
        let mut accepting = Vec::new();
        for listener in listeners {
            let (broker, live) = (broker.clone(), live.clone());
            let thread = std::thread::Builder::new()
                .name("rill-accept".into())
                .spawn(move || accept_loop(&listener, &broker, &live))
                .map_err(|source| Error::Thread {
                    what: "accept",
                    source,
                })?;
            accepting.push(thread);
        }
        Ok(Server {
            broker,
            local,
            accepting,
            live,
            data_dir,
        })
    }

    /// The addresses actually bound (ports resolved when 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The broker, for embedding and tests.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, closes every connection, waits (bounded) for them to end, then shuts
    /// the engine down (every partition synced and marked clean).
    pub fn shutdown(self) -> Result<(), Error> {
        self.live.stopping.store(true, Ordering::Release);
        self.broker.stop();
        for addr in &self.local {
            // Wakes the accept loop, which then sees `stopping`.
            let _ = TcpStream::connect_timeout(&wake_addr(*addr), Duration::from_secs(1));
        }
        for thread in self.accepting {
            let _ = thread.join();
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let mut streams = self
            .live
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for stream in streams.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        while !streams.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                log::warn!("{} connections still open at shutdown", streams.len());
                break;
            };
            streams = self
                .live
                .drained
                .wait_timeout(streams, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(streams);
        holder::remove(&self.data_dir);
        match Arc::try_unwrap(self.broker) {
            Ok(broker) => broker.engine.shutdown().map_err(Error::from),
            // A connection thread still holds the broker: the engine shuts down when it lets go.
            Err(_) => Ok(()),
        }
    }
}

fn accept_loop(listener: &TcpListener, broker: &Arc<Broker>, live: &Arc<Live>) {
    loop {
        let accepted = listener.accept();
        if live.stopping.load(Ordering::Acquire) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of descriptors, a connection reset before accept: keep serving.
                log::warn!("accept failed: {error}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = live.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            live.streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, clone);
        }
        let (broker, live_for_thread) = (broker.clone(), live.clone());
        let spawned = std::thread::Builder::new()
            .name("rill-conn-read".into())
            .spawn(move || {
                connection::serve(broker, stream, peer);
                let mut streams = live_for_thread
                    .streams
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                streams.remove(&id);
                live_for_thread.drained.notify_all();
            });
        if let Err(error) = spawned {
            log::warn!("{peer}: cannot start a connection thread: {error}");
            live.streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
    }
}

/// Where to connect to wake a listener bound to `addr` (a wildcard address is reached on
/// loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    target
}

/// A cluster id that stays the same for a data directory: a hash of its canonical path.
fn cluster_id(dir: &std::path::Path) -> String {
    let path = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    // FNV-1a: stable across Rust releases, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("rill-{hash:016x}")
}
