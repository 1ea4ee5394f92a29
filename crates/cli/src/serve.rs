//! `rill serve`: a Kafka broker on a data directory until SIGINT or SIGTERM.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rill_engine::{DirectIo, EngineConfig};
use rill_server::{DEFAULT_PORT, Server, ServerConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// Address to listen on; repeat for several. Default: 127.0.0.1:9092 and [::1]:9092.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Host and port clients are told to connect to (default: the first listener).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Partitions of topics created by a Metadata request or a CreateTopics that asks for the
    /// default.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Do not create topics that clients ask Metadata about.
    #[arg(long)]
    pub no_auto_create: bool,
    /// Largest request frame accepted, in bytes (Kafka's socket.request.max.bytes).
    #[arg(long, default_value_t = rill_server::DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// How long the first member of an empty consumer group waits for others before the first
    /// generation forms, in ms (Kafka's group.initial.rebalance.delay.ms, 3000 there).
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a group member may ask for, in ms (Kafka's
    /// group.min.session.timeout.ms, 6000 there).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub group_min_session_timeout_ms: u64,
    /// A KIP-848 group member that sends no heartbeat for this long is removed, in ms (Kafka's
    /// group.consumer.session.timeout.ms, 45000 there too).
    #[arg(long, value_name = "MS", default_value_t = 45_000)]
    pub group_consumer_session_timeout_ms: u64,
    /// How often KIP-848 group members heartbeat, in ms (Kafka's
    /// group.consumer.heartbeat.interval.ms, 5000 there).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub group_consumer_heartbeat_interval_ms: u64,
    /// How segments are written: `auto` measures O_DIRECT against the page cache on the data
    /// directory's file system once and remembers the faster; `on` or `off` decide.
    #[arg(long, value_name = "auto|on|off", default_value_t = DirectIo::Auto)]
    pub direct_io: DirectIo,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    crate::logger::init();
    // Blocked before any thread starts, so every thread inherits the mask and the signals wait
    // for `sigwait` below instead of killing the process mid-write.
    let signals = stop_signals::block().context("cannot block SIGINT/SIGTERM")?;
    let (listen, optional) = if args.listen.is_empty() {
        (
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT))],
            vec![SocketAddr::from((Ipv6Addr::LOCALHOST, DEFAULT_PORT))],
        )
    } else {
        (args.listen.clone(), Vec::new())
    };
    let mut config = ServerConfig::new(listen);
    config.advertise = args.advertise.as_deref().map(parse_host_port).transpose()?;
    config.default_partitions = args.partitions.max(1);
    config.auto_create_topics = !args.no_auto_create;
    config.max_request_bytes = args.max_request_bytes;
    config.groups.initial_rebalance_delay =
        std::time::Duration::from_millis(args.group_initial_rebalance_delay_ms);
    config.groups.min_session_timeout =
        std::time::Duration::from_millis(args.group_min_session_timeout_ms);
    config.groups.consumer_session_timeout =
        std::time::Duration::from_millis(args.group_consumer_session_timeout_ms.max(1));
    config.groups.consumer_heartbeat_interval =
        std::time::Duration::from_millis(args.group_consumer_heartbeat_interval_ms.max(1));
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let engine = EngineConfig {
        direct_io: args.direct_io,
        ..EngineConfig::new(&args.dir)
    };
    let server = Server::open(engine, config, &optional)
        .with_context(|| format!("cannot serve {}", args.dir.display()))?;
    let addrs: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    eprintln!(
        "rill: listening on {} (data directory {})",
        addrs.join(", "),
        args.dir.display()
    );
    let engine = server.broker().engine();
    let mode = engine.write_mode();
    eprintln!(
        "rill: {} backend, segments written {}: {}",
        engine.backend(),
        if mode.direct {
            "with O_DIRECT"
        } else {
            "through the page cache"
        },
        mode.reason
    );
    let signal = stop_signals::wait(&signals);
    eprintln!("rill: {signal}, shutting down");
    server.shutdown().context("shutdown")?;
    eprintln!("rill: stopped");
    Ok(())
}

fn parse_host_port(text: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("--advertise {text:?}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--advertise {text:?}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

/// SIGINT and SIGTERM, received synchronously by the main thread.
#[cfg(unix)]
mod stop_signals {
    use std::io;

    pub struct Set(libc::sigset_t);

    /// Blocks SIGINT and SIGTERM in this thread (and every thread it starts afterwards).
    pub fn block() -> io::Result<Set> {
        // SAFETY: a zeroed `sigset_t` is valid storage; `sigemptyset` initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is valid, owned storage for the calls below, which only write to it.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
        }
        // SAFETY: `set` is initialised; the old mask is not wanted (null is allowed).
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(Set(set))
    }

    /// Sleeps in the kernel until one of the signals arrives; names it.
    pub fn wait(set: &Set) -> &'static str {
        loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `set.0` is an initialised signal set and `signal` valid storage.
            if unsafe { libc::sigwait(&set.0, &mut signal) } == 0 {
                return if signal == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
            }
        }
    }
}

#[cfg(not(unix))]
mod stop_signals {
    pub struct Set;

    pub fn block() -> std::io::Result<Set> {
        Ok(Set)
    }

    /// Without POSIX signals the server runs until the process is killed.
    pub fn wait(_: &Set) -> &'static str {
        loop {
            std::thread::park();
        }
    }
}
