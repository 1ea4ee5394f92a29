//! What one scenario run does ([`Spec`]), and the command-line knobs that override the suite's
//! choices ([`Knobs`]).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use rill_engine::log::{FsyncPolicy, Visibility};
use rill_engine::{AckLevel, DirectIo, Engine, EngineConfig, IoMode};

/// How much a scenario sends: a number of records, or as many as fit in a duration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    Records(u64),
    Duration(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// io_uring where the machine allows it (the engine falls back, and the report says so).
    Uring,
    /// The portable pwrite/fdatasync backend.
    Sync,
}

/// One scenario's settings, after the suite's defaults and the user's knobs.
#[derive(Clone, Debug)]
pub struct Spec {
    pub record_bytes: usize,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub partitions: u32,
    pub producers: usize,
    pub consumers: usize,
    pub amount: Amount,
    /// Records per second across all producers, for the open-loop `rate` scenario.
    pub rate: u64,
    pub ack: AckLevel,
    pub fsync: FsyncPolicy,
    /// Which watermark bounds what the consumers see.
    pub visibility: Visibility,
    pub backend: Backend,
    pub direct_io: DirectIo,
    /// Segments preallocated with fallocate (`LogConfig::preallocate`).
    pub preallocate: bool,
    pub pin: bool,
    /// Shard threads; 0: one per core.
    pub shards: usize,
    /// Producers stamp producer ids and sequences (the idempotence bookkeeping's cost).
    pub idempotent: bool,
}

impl Spec {
    pub fn new(record_bytes: usize, amount: Amount) -> Self {
        Self {
            record_bytes,
            batch_bytes: 256 * 1024,
            linger: Duration::from_millis(5),
            partitions: 4,
            producers: 1,
            consumers: 1,
            amount,
            rate: 100_000,
            ack: AckLevel::Written,
            fsync: FsyncPolicy::Never,
            visibility: Visibility::Written,
            backend: Backend::Uring,
            direct_io: DirectIo::Auto,
            preallocate: rill_engine::log::LogConfig::default().preallocate,
            pin: true,
            shards: 0,
            idempotent: false,
        }
    }

    /// The most records one producer may send, for sizing the ledger. Runs bounded by time
    /// get room for what the producers could send at 50 million records per second.
    pub fn records_per_producer(&self) -> u64 {
        let total = match self.amount {
            Amount::Records(n) => n,
            Amount::Duration(d) => (d.as_secs_f64() * 50e6) as u64,
        };
        total.div_ceil(self.producers.max(1) as u64)
    }

    /// Opens an engine in an empty `dir` and creates the bench topic.
    pub fn open_engine(&self, dir: &Path) -> anyhow::Result<Engine> {
        let engine = self.reopen_engine(dir)?;
        engine
            .create_topic(TOPIC, self.partitions)
            .context("create the bench topic")?;
        Ok(engine)
    }

    /// Opens an engine on what an earlier one left in `dir`.
    pub fn reopen_engine(&self, dir: &Path) -> anyhow::Result<Engine> {
        let config = self.engine_config(dir);
        let engine =
            Engine::open(config).with_context(|| format!("open an engine in {}", dir.display()))?;
        let mode = engine.write_mode();
        eprintln!(
            "engine: {} backend, {}: {}",
            engine.backend(),
            if mode.direct {
                "O_DIRECT"
            } else {
                "page cache"
            },
            mode.reason
        );
        engine
            .create_topic(TOPIC, self.partitions)
            .context("create the bench topic")?;
        Ok(engine)
    }

    /// The engine settings this spec asks for, on `dir` (the wire scenarios' server opens
    /// its engine with them too).
    pub fn engine_config(&self, dir: &Path) -> EngineConfig {
        let mut config = EngineConfig::new(dir);
        config.io = match self.backend {
            Backend::Uring => IoMode::Auto,
            Backend::Sync => IoMode::Sync,
        };
        config.pin_shards = self.pin;
        config.shards = self.shards;
        config.log.fsync = self.fsync;
        config.log.visibility = self.visibility;
        config.direct_io = self.direct_io;
        config.log.preallocate = self.preallocate;
        config
    }

    /// Settings a reader needs next to the figures.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("batch_bytes".to_owned(), self.batch_bytes.to_string()),
            (
                "linger_ms".to_owned(),
                format!("{}", self.linger.as_secs_f64() * 1e3),
            ),
            ("ack".to_owned(), format!("{:?}", self.ack).to_lowercase()),
            ("fsync".to_owned(), format!("{:?}", self.fsync)),
            (
                "visibility".to_owned(),
                visibility_name(self.visibility).to_owned(),
            ),
            ("direct_io".to_owned(), self.direct_io.to_string()),
            ("preallocate".to_owned(), self.preallocate.to_string()),
            ("pinned_shards".to_owned(), self.pin.to_string()),
            ("idempotent".to_owned(), self.idempotent.to_string()),
        ];
        if let Amount::Duration(d) = self.amount {
            out.push(("duration_s".to_owned(), format!("{}", d.as_secs_f64())));
        }
        out
    }
}

/// The topic every scenario writes.
pub const TOPIC: &str = "bench";

/// Overrides for the suite's settings; every scenario they apply to takes them.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Knobs {
    /// Bytes of each record's value.
    #[arg(long, global = true)]
    pub record_bytes: Option<usize>,
    /// Bytes a producer batch fills before it is handed over.
    #[arg(long, global = true)]
    pub batch_bytes: Option<usize>,
    /// Longest a batch waits to fill, in milliseconds.
    #[arg(long, global = true)]
    pub linger_ms: Option<f64>,
    #[arg(long, global = true)]
    pub partitions: Option<u32>,
    #[arg(long, global = true)]
    pub producers: Option<usize>,
    #[arg(long, global = true)]
    pub consumers: Option<usize>,
    /// Records to send (instead of the suite's amount).
    #[arg(long, global = true, conflicts_with = "duration_s")]
    pub records: Option<u64>,
    /// Seconds to send for (instead of the suite's amount).
    #[arg(long, global = true)]
    pub duration_s: Option<f64>,
    /// Records per second for the open-loop `rate` scenario.
    #[arg(long, global = true)]
    pub rate: Option<u64>,
    /// `appended`, `written` or `durable`: what a producer's ticket waits for.
    #[arg(long, global = true)]
    pub ack: Option<AckLevel>,
    /// `never`, `every-append`, or an interval in milliseconds such as `10ms`.
    #[arg(long, global = true, value_parser = parse_fsync)]
    pub fsync: Option<FsyncPolicy>,
    /// `appended`, `written` or `durable`: what consumers may see (durable needs an fsync
    /// other than never).
    #[arg(long, global = true, value_parser = parse_visibility)]
    pub visibility: Option<Visibility>,
    #[arg(long, global = true, value_enum)]
    pub backend: Option<Backend>,
    /// Write segments with O_DIRECT (io_uring backend): `auto` (measure, the engine's
    /// default), `on`/`true` or `off`/`false`.
    #[arg(long, global = true)]
    pub direct_io: Option<DirectIo>,
    /// Preallocate segments with fallocate (`true`/`false`; default: the engine's).
    #[arg(long, global = true)]
    pub preallocate: Option<bool>,
    /// Leave shard threads unpinned.
    #[arg(long, global = true)]
    pub no_pin: bool,
    /// Shard threads (default: one per core).
    #[arg(long, global = true)]
    pub shards: Option<usize>,
    /// Idempotent producers: every batch carries a producer id and sequences, checked by the
    /// partition (to measure what that bookkeeping costs).
    #[arg(long, global = true)]
    pub idempotent: bool,
}

impl Knobs {
    pub fn apply(&self, spec: &mut Spec) {
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { spec.$field = v; } )* };
        }
        take!(
            record_bytes,
            batch_bytes,
            partitions,
            producers,
            consumers,
            rate,
            ack,
            fsync,
            visibility,
            backend,
            direct_io,
            preallocate,
            shards
        );
        if let Some(ms) = self.linger_ms {
            spec.linger = Duration::from_secs_f64(ms.max(0.0) / 1e3);
        }
        if let Some(n) = self.records {
            spec.amount = Amount::Records(n);
        }
        if let Some(s) = self.duration_s {
            spec.amount = Amount::Duration(Duration::from_secs_f64(s.max(0.0)));
        }
        if self.no_pin {
            spec.pin = false;
        }
        if self.idempotent {
            spec.idempotent = true;
        }
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self
            .record_bytes
            .is_some_and(|b| b < crate::workload::HEADER_BYTES)
        {
            bail!(
                "--record-bytes must be at least {}: each value carries its identity and send time",
                crate::workload::HEADER_BYTES
            );
        }
        if self.partitions == Some(0) || self.producers == Some(0) || self.consumers == Some(0) {
            bail!("--partitions, --producers and --consumers must be at least 1");
        }
        if self.rate == Some(0) {
            bail!("--rate must be at least 1 record per second");
        }
        Ok(())
    }
}

fn parse_fsync(text: &str) -> Result<FsyncPolicy, String> {
    match text {
        "never" => Ok(FsyncPolicy::Never),
        "every-append" => Ok(FsyncPolicy::EveryAppend),
        other => other
            .strip_suffix("ms")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
            .ok_or_else(|| format!("`{other}`: expected never, every-append or <N>ms")),
    }
}

fn parse_visibility(text: &str) -> Result<Visibility, String> {
    match text {
        "appended" => Ok(Visibility::Appended),
        "written" => Ok(Visibility::Written),
        "durable" => Ok(Visibility::Durable),
        other => Err(format!("`{other}`: expected appended, written or durable")),
    }
}

/// A visibility as the command line spells it.
fn visibility_name(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Appended => "appended",
        Visibility::Written => "written",
        Visibility::Durable => "durable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_override_only_what_is_given() {
        let mut spec = Spec::new(1024, Amount::Records(10));
        let knobs = Knobs {
            partitions: Some(7),
            linger_ms: Some(0.5),
            duration_s: Some(2.0),
            no_pin: true,
            ..Knobs::default()
        };
        knobs.apply(&mut spec);
        assert_eq!(spec.partitions, 7);
        assert_eq!(spec.record_bytes, 1024);
        assert_eq!(spec.linger, Duration::from_micros(500));
        assert_eq!(spec.amount, Amount::Duration(Duration::from_secs(2)));
        assert!(!spec.pin);
    }

    #[test]
    fn fsync_policies_parse() {
        assert_eq!(parse_fsync("never"), Ok(FsyncPolicy::Never));
        assert_eq!(
            parse_fsync("10ms"),
            Ok(FsyncPolicy::Interval(Duration::from_millis(10)))
        );
        assert!(parse_fsync("sometimes").is_err());
    }

    #[test]
    fn visibilities_parse_and_reach_the_settings() {
        for name in ["appended", "written", "durable"] {
            let visibility = parse_visibility(name).unwrap();
            assert_eq!(visibility_name(visibility), name);
        }
        assert!(parse_visibility("soon").is_err());
        let mut spec = Spec::new(100, Amount::Records(10));
        let knobs = Knobs {
            visibility: Some(Visibility::Appended),
            ..Knobs::default()
        };
        knobs.apply(&mut spec);
        assert!(
            spec.settings()
                .contains(&("visibility".to_owned(), "appended".to_owned()))
        );
    }

    #[test]
    fn tiny_records_are_refused() {
        let knobs = Knobs {
            record_bytes: Some(8),
            ..Knobs::default()
        };
        assert!(knobs.check().is_err());
    }
}
