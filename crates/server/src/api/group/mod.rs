//! The consumer-group APIs, classic and KIP-848, served by the
//! [`coordinator`](crate::coordinator).

pub mod consumer;
pub mod describe;
pub mod find;
pub mod membership;
pub mod offsets;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Context;
use crate::coordinator::group::{JoinAnswer, SyncAnswer};
use crate::coordinator::reply::Reply;
use crate::error::ConnectionError;
use crate::response::Encoded;

/// Beyond the rebalance timeout, how long a waiting JoinGroup or SyncGroup may wait for the
/// coordinator's answer before the writer gives up on it (the timer answers well before).
const ANSWER_SLACK: Duration = Duration::from_secs(5);

/// A JoinGroup or SyncGroup whose answer comes when its rebalance step completes.
#[derive(Debug)]
pub struct Waiting {
    cx: Context,
    deadline: Instant,
    slot: Slot,
}

#[derive(Debug)]
enum Slot {
    Join(Arc<Reply<JoinAnswer>>),
    Sync(Arc<Reply<SyncAnswer>>),
}

impl Waiting {
    /// Waits (bounded) for the answer, then encodes it. A wait that outlives its bound is
    /// answered REBALANCE_IN_PROGRESS, which makes the client join again.
    pub fn finish(self) -> Result<Encoded, ConnectionError> {
        let busy = kafka_protocol::ResponseError::RebalanceInProgress.code();
        match self.slot {
            Slot::Join(reply) => {
                let answer = reply.wait(self.deadline).unwrap_or_else(|| JoinAnswer {
                    error: busy,
                    generation: -1,
                    ..JoinAnswer::default()
                });
                log::debug!(
                    "JoinGroup answer: member {} generation {} leader {} error {}",
                    answer.member_id,
                    answer.generation,
                    answer.leader,
                    answer.error
                );
                membership::join_response(self.cx, answer)
            }
            Slot::Sync(reply) => {
                let answer = reply.wait(self.deadline).unwrap_or_else(|| SyncAnswer {
                    error: busy,
                    ..SyncAnswer::default()
                });
                log::debug!("SyncGroup answer: error {}", answer.error);
                membership::sync_response(self.cx, answer)
            }
        }
    }
}

/// A non-negative millisecond count from a request, as a duration.
fn millis(value: i32) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}
