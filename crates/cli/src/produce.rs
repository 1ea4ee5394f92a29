//! `rill produce DIR TOPIC`: every line of stdin becomes a record, in the spirit of Kafka's
//! `kafka-console-producer`.
//!
//! Records are batched as the engine's producer batches them, but a batch never waits for input
//! that has not arrived: once everything read so far has been sent, the producer is flushed. A
//! pipe is thus written in batches about as large as its reads, and someone typing sees each
//! line acknowledged as soon as they press Enter.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::builder::NonEmptyStringValueParser;
use clap::{Args, ValueEnum};
use rill_engine::engine::{AckLevel, Engine, Ticket};
use rill_engine::producer::{Producer, ProducerConfig, ProducerRecord};
use rill_engine::topic::TopicName;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// A rill data directory; created if missing.
    pub dir: PathBuf,

    /// The topic to append to; created if missing. With `--bootstrap`, the only positional
    /// argument: `rill produce --bootstrap HOST:PORT TOPIC`.
    #[arg(required_unless_present = "bootstrap")]
    pub topic: Option<String>,

    /// Send to a Kafka broker (`rill serve`, or any Kafka) at HOST:PORT instead of opening a
    /// data directory.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,

    /// Partitions of the topic when it is created [default: 1]. Given for a topic that exists
    /// with another count, it is refused.
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,

    /// Split each line at the first SEP: the part before is the key, which picks the partition
    /// as Kafka's producer would (murmur2). Lines without SEP have no key.
    #[arg(long, value_name = "SEP", value_parser = NonEmptyStringValueParser::new())]
    pub key_sep: Option<String>,

    /// How far a record must get before it counts as produced.
    #[arg(long, value_enum, default_value_t = Ack::Written)]
    pub ack: Ack,

    /// Print `PARTITION OFFSET` for each record once it is acknowledged, in input order.
    #[arg(long)]
    pub print_offsets: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Ack {
    /// The record has its offset.
    Appended,
    /// The record is in the file (the page cache), readable by consumers.
    Written,
    /// The record is synced to disk.
    Durable,
}

impl From<Ack> for AckLevel {
    fn from(ack: Ack) -> Self {
        match ack {
            Ack::Appended => AckLevel::Appended,
            Ack::Written => AckLevel::Written,
            Ack::Durable => AckLevel::Durable,
        }
    }
}

impl ProduceArgs {
    /// The topic: the second positional argument, or with `--bootstrap` the only one.
    pub fn topic(&self) -> &str {
        match &self.topic {
            Some(topic) => topic,
            None => self.dir.to_str().unwrap_or_default(),
        }
    }
}

pub fn run(args: &ProduceArgs) -> anyhow::Result<()> {
    if let Some(bootstrap) = &args.bootstrap {
        TopicName::new(args.topic())?;
        let options = crate::remote::ProduceOptions {
            topic: args.topic(),
            partitions: args.partitions,
            key_sep: args.key_sep.as_deref().map(str::as_bytes),
            durable: matches!(args.ack, Ack::Durable),
            print_offsets: args.print_offsets,
        };
        return crate::remote::produce(bootstrap, &options);
    }
    // Checked before the engine opens, and so before DIR is created: a bad name leaves nothing
    // behind on disk.
    TopicName::new(args.topic())?;
    let engine = crate::open_engine(&args.dir)?;
    let produced = produce(&engine, args);
    // Even after a failure: records already sent are still appended, and the directory is left
    // closed clean rather than in need of recovery.
    let closed = engine
        .shutdown()
        .with_context(|| format!("cannot close {} cleanly", args.dir.display()));
    produced?;
    closed
}

fn produce(engine: &Engine, args: &ProduceArgs) -> anyhow::Result<()> {
    // Without `--partitions`, an existing topic is taken as it is: appending to a topic should
    // not require remembering how it was created.
    let exists = engine.topics().iter().any(|(name, _)| name == args.topic());
    if args.partitions.is_some() || !exists {
        engine.create_topic(args.topic(), args.partitions.unwrap_or(1))?;
    }
    let mut producer = engine.producer_with(
        args.topic(),
        ProducerConfig {
            ack: args.ack.into(),
            ..ProducerConfig::default()
        },
    )?;
    let mut acks = Acks {
        pending: VecDeque::new(),
        out: args
            .print_offsets
            .then(|| BufWriter::new(io::stdout().lock())),
    };
    let sent = send_lines(&mut producer, &mut acks, args.key_sep.as_deref());
    // After a failed send the records before it are still produced: report their offsets before
    // the error, so the output says exactly which lines made it.
    let settled = producer
        .flush()
        .map_err(anyhow::Error::from)
        .and_then(|()| acks.settle());
    sent?;
    settled
}

fn send_lines(
    producer: &mut Producer,
    acks: &mut Acks<impl Write>,
    key_sep: Option<&str>,
) -> anyhow::Result<()> {
    let separator = key_sep.map(str::as_bytes);
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("cannot read stdin")?
            == 0
        {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let (key, value) = split(&line, separator);
        acks.pending
            .push_back(producer.send(ProducerRecord::new(key, value))?);
        if input.buffer().is_empty() {
            // Nothing more is at hand: whatever comes next may be a long way off (a person
            // typing, a slow pipe), so the open batches go now instead of waiting for it.
            producer.flush()?;
            acks.settle()?;
        } else {
            acks.report_ready()?;
        }
    }
}

/// `(key, value)`: split at the first `separator`; the whole line is the value when it has none.
fn split<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let found = separator.and_then(|sep| {
        line.windows(sep.len())
            .position(|window| window == sep)
            .map(|at| (at, sep.len()))
    });
    match found {
        Some((at, len)) => (Some(&line[..at]), &line[at + len..]),
        None => (None, line),
    }
}

/// Tickets of records sent but not yet reported, in input order.
///
/// Kept even when offsets are not printed: a ticket is where a failed append shows up, and
/// `Producer::flush` only waits on the last record of each partition.
struct Acks<W: Write> {
    pending: VecDeque<Ticket>,
    out: Option<W>,
}

impl<W: Write> Acks<W> {
    /// Reports the acknowledged records at the front of the queue without waiting. Input order
    /// means a record waiting on one partition holds back those after it on the others.
    fn report_ready(&mut self) -> anyhow::Result<()> {
        let mut reported = false;
        while let Some(ticket) = self.pending.front() {
            let Some(offset) = ticket.poll()? else {
                break;
            };
            self.report(offset)?;
            reported = true;
        }
        if reported {
            self.flush_out()?;
        }
        Ok(())
    }

    /// Waits for every pending record and reports it; call after `Producer::flush`, since a
    /// record still in an open batch cannot be waited for.
    fn settle(&mut self) -> anyhow::Result<()> {
        let reported = !self.pending.is_empty();
        while let Some(ticket) = self.pending.front() {
            let offset = ticket.wait()?;
            self.report(offset)?;
        }
        if reported {
            self.flush_out()?;
        }
        Ok(())
    }

    /// Prints the front record's offset and drops its ticket.
    fn report(&mut self, offset: i64) -> io::Result<()> {
        let Some(ticket) = self.pending.pop_front() else {
            return Ok(());
        };
        let written = match &mut self.out {
            Some(out) => writeln!(out, "{} {offset}", ticket.partition()),
            None => Ok(()),
        };
        self.unless_reader_left(written)
    }

    fn flush_out(&mut self) -> io::Result<()> {
        let flushed = self.out.as_mut().map_or(Ok(()), Write::flush);
        self.unless_reader_left(flushed)
    }

    /// The offsets are a report on the job, not the job: when their reader goes away
    /// (`… --print-offsets | head`), the rest of the input is still produced, unreported.
    fn unless_reader_left(&mut self, result: io::Result<()>) -> io::Result<()> {
        match result {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.out = None;
                Ok(())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_at_the_first_separator_only() {
        assert_eq!(
            split(b"k::v::w", Some(b"::")),
            (Some(&b"k"[..]), &b"v::w"[..])
        );
        assert_eq!(split(b"::v", Some(b"::")), (Some(&b""[..]), &b"v"[..]));
        assert_eq!(split(b"k::", Some(b"::")), (Some(&b"k"[..]), &b""[..]));
        assert_eq!(split(b"no sep", Some(b"::")), (None, &b"no sep"[..]));
        assert_eq!(split(b":", Some(b"::")), (None, &b":"[..]));
        assert_eq!(split(b"k::v", None), (None, &b"k::v"[..]));
    }
}
