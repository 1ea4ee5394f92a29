//! Peers alternate with rill in rounds: each round runs rill's produce-then-consume and every
//! peer's append-then-read on the same workload, one after another (the order rotated every
//! round, so no engine always follows the same neighbour), and each peer's figures are divided
//! by rill's of the same round. On a disk that moves by a third within a minute, a ratio of
//! neighbours is a figure; a ratio of runs minutes apart is not. The report gives each ratio's
//! median over the rounds and its range.

use std::path::Path;

use anyhow::Context;

use crate::peers::{self, PeerPhase, PeerWorkload};
use crate::report::PeerComparison;
use crate::scenario::{self, Outcome, ratio};
use crate::spec::Spec;

/// A peer's run: both phases on a fresh directory.
pub type PeerRun = fn(&Path, &PeerWorkload) -> anyhow::Result<[PeerPhase; 2]>;

/// The peers the suite measures.
pub const PEERS: [(&str, PeerRun); 2] = [
    ("commitlog", peers::run_commitlog),
    ("fjall", peers::run_fjall),
];

/// What one round measured: rill's two outcomes and each peer's two phases.
struct Round {
    rill: [Outcome; 2],
    peers: Vec<[PeerPhase; 2]>,
}

/// Runs `rounds` rounds of rill (with `spec`, whose amount is `work.records`) and every peer
/// in directories under `root`; returns the comparisons and the peers' phases of the last round.
pub fn run(
    root: &Path,
    spec: &Spec,
    work: &PeerWorkload,
    rounds: usize,
) -> anyhow::Result<(Vec<PeerComparison>, Vec<PeerPhase>)> {
    let mut done = Vec::with_capacity(rounds);
    for round in 0..rounds {
        done.push(one_round(root, spec, work, round)?);
    }
    let mut comparisons = Vec::new();
    for (i, (peer, _)) in PEERS.iter().enumerate() {
        for (phase, side) in [("append", 0), ("read", 1)] {
            let pairs: Vec<(&Outcome, &PeerPhase)> = done
                .iter()
                .map(|r| (&r.rill[side], &r.peers[i][side]))
                .collect();
            comparisons.push(compare(peer, phase, work, &pairs));
        }
    }
    let last = done
        .pop()
        .map(|r| r.peers.into_iter().flatten().collect())
        .unwrap_or_default();
    Ok((comparisons, last))
}

fn one_round(root: &Path, spec: &Spec, work: &PeerWorkload, round: usize) -> anyhow::Result<Round> {
    let bytes = work.record_bytes;
    // Slot 0 is rill, slot i + 1 peer i; the start rotates by one each round.
    let slots = PEERS.len() + 1;
    let mut rill = None;
    let mut peer_phases: Vec<Option<[PeerPhase; 2]>> = (0..PEERS.len()).map(|_| None).collect();
    for k in 0..slots {
        let slot = (round + k) % slots;
        if slot == 0 {
            let dir = root.join(format!("round-rill-{bytes}"));
            rill = Some(crate::workdir::in_dir(&dir, |dir| {
                scenario::throughput::produce_then_consume(dir, spec, &mut || Ok(()))
            })?);
        } else {
            let (peer, run) = PEERS[slot - 1];
            let dir = root.join(format!("round-{peer}-{bytes}"));
            let phases = crate::workdir::in_dir(&dir, |dir| run(dir, work))
                .with_context(|| format!("peer {peer}, round {round}"))?;
            peer_phases[slot - 1] = Some(phases);
        }
    }
    Ok(Round {
        rill: rill.context("rill did not run in the round")?,
        peers: peer_phases
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .context("a peer did not run in the round")?,
    })
}

fn compare(
    peer: &str,
    phase: &str,
    work: &PeerWorkload,
    pairs: &[(&Outcome, &PeerPhase)],
) -> PeerComparison {
    let gb = |bytes: u64| bytes as f64 / 1e9;
    let speed: Vec<f64> = pairs
        .iter()
        .map(|(rill, peer)| ratio(rill.mb_per_s(), peer.mb_per_s()))
        .collect();
    let cpu: Vec<f64> = pairs
        .iter()
        .map(|(rill, peer)| {
            let rill_gb = gb(rill.records * rill.spec.record_bytes as u64);
            ratio(
                ratio(rill.cpu.as_secs_f64(), rill_gb),
                ratio(peer.cpu.as_secs_f64(), gb(peer.bytes)),
            )
        })
        .collect();
    PeerComparison {
        peer: peer.to_owned(),
        phase: phase.to_owned(),
        record_bytes: work.record_bytes,
        records: work.records,
        rill_over_peer_mb_s_median: median(&speed),
        rill_over_peer_mb_s_range: range(&speed),
        rill_over_peer_mb_s: speed,
        rill_over_peer_cpu_per_gb_median: median(&cpu),
        rill_over_peer_cpu_per_gb_range: range(&cpu),
        rill_over_peer_cpu_per_gb: cpu,
    }
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn range(values: &[f64]) -> Vec<f64> {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        Vec::new()
    } else {
        vec![low, high]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(range(&[2.0, 0.5, 1.0]), vec![0.5, 2.0]);
        assert!(range(&[]).is_empty());
    }
}
