//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: the classic rebalance protocol.

use std::net::SocketAddr;
use std::time::Instant;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{ANSWER_SLACK, Slot, Waiting, millis};
use crate::api::Pending;
use crate::api::text;
use crate::broker::{Broker, Context, respond};
use crate::coordinator::group::{JoinAnswer, JoinRequest, SyncAnswer, SyncRequest};
use crate::error::ConnectionError;
use crate::response::Encoded;

fn owned(value: &StrBytes) -> String {
    value.as_str().to_owned()
}

fn owned_opt(value: &Option<StrBytes>) -> Option<String> {
    value.as_ref().map(owned)
}

/// JoinGroup: answered when the join phase ends (or at once when nothing has to wait).
pub fn join(
    broker: &Broker,
    cx: Context,
    client_id: Option<&StrBytes>,
    peer: SocketAddr,
    request: JoinGroupRequest,
) -> Result<Pending, ConnectionError> {
    let group_id = owned(&request.group_id.0);
    let session_timeout = millis(request.session_timeout_ms);
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance_timeout = if cx.version >= 1 {
        millis(request.rebalance_timeout_ms)
    } else {
        session_timeout
    };
    let fail = |code: ResponseError| {
        join_response(
            cx,
            JoinAnswer {
                error: code.code(),
                generation: -1,
                member_id: owned(&request.member_id),
                ..JoinAnswer::default()
            },
        )
        .map(Pending::Ready)
    };
    if group_id.is_empty() {
        return fail(ResponseError::InvalidGroupId);
    }
    let join = JoinRequest {
        member_id: owned(&request.member_id),
        instance_id: owned_opt(&request.group_instance_id),
        client_id: client_id.map(owned).unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
        session_timeout,
        rebalance_timeout,
        protocol_type: owned(&request.protocol_type),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (owned(&p.name), p.metadata))
            .collect(),
        require_known_id: cx.version >= 4,
    };
    log::debug!(
        "JoinGroup v{} group {group_id:?} member {:?} instance {:?}",
        cx.version,
        join.member_id,
        join.instance_id
    );
    let timing = broker.groups.timing();
    let mut groups = match broker.groups.lock() {
        Ok(groups) => groups,
        Err(code) => {
            return join_response(
                cx,
                JoinAnswer {
                    error: code,
                    generation: -1,
                    ..JoinAnswer::default()
                },
            )
            .map(Pending::Ready);
        }
    };
    if !groups.claim_classic(&group_id) {
        drop(groups);
        return fail(ResponseError::InconsistentGroupProtocol);
    }
    let fresh = groups.new_member_id(&join.client_id);
    let reply = groups
        .touch(&group_id)
        .join(join, &timing, Instant::now(), fresh);
    drop(groups);
    let deadline = Instant::now() + rebalance_timeout + timing.initial_delay + ANSWER_SLACK;
    Ok(Pending::Group(Waiting {
        cx,
        deadline,
        slot: Slot::Join(reply),
    }))
}

/// Encodes a JoinGroup answer for the request's version.
pub(super) fn join_response(cx: Context, answer: JoinAnswer) -> Result<Encoded, ConnectionError> {
    let mut response = JoinGroupResponse::default()
        .with_error_code(answer.error)
        .with_generation_id(answer.generation)
        .with_leader(text(answer.leader))
        .with_member_id(text(answer.member_id))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(m.id))
                        .with_group_instance_id(if cx.version >= 5 {
                            m.instance_id.map(text)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    response.protocol_name = Some(text(answer.protocol_name.unwrap_or_default()));
    if cx.version >= 9 {
        response.skip_assignment = answer.skip_assignment;
    }
    if cx.version >= 7 {
        response.protocol_type = answer.protocol_type.map(text);
        if response.error_code != 0 {
            response.protocol_name = None;
        }
    }
    respond(cx, &response)
}

/// SyncGroup: a follower's answer waits for the leader's assignment.
pub fn sync(
    broker: &Broker,
    cx: Context,
    request: SyncGroupRequest,
) -> Result<Pending, ConnectionError> {
    let group_id = owned(&request.group_id.0);
    let sync = SyncRequest {
        generation: request.generation_id,
        member_id: owned(&request.member_id),
        instance_id: owned_opt(&request.group_instance_id),
        protocol_type: owned_opt(&request.protocol_type),
        protocol_name: owned_opt(&request.protocol_name),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (owned(&a.member_id), a.assignment))
            .collect(),
    };
    let ready = |code: i16| {
        sync_response(
            cx,
            SyncAnswer {
                error: code,
                ..SyncAnswer::default()
            },
        )
        .map(Pending::Ready)
    };
    log::debug!(
        "SyncGroup v{} group {group_id:?} member {:?} generation {}",
        cx.version,
        sync.member_id,
        sync.generation
    );
    if group_id.is_empty() {
        return ready(ResponseError::InvalidGroupId.code());
    }
    let mut groups = match broker.groups.lock() {
        Ok(groups) => groups,
        Err(code) => return ready(code),
    };
    let Some(_) = groups.get(&group_id) else {
        return ready(ResponseError::UnknownMemberId.code());
    };
    let reply = groups.touch(&group_id).sync(sync, Instant::now());
    drop(groups);
    // The leader has until the group's sync deadline (its rebalance timeout), after which the
    // timer answers; this bound only keeps a lost answer from holding the connection forever.
    let bound = broker.groups.timing().max_session;
    Ok(Pending::Group(Waiting {
        cx,
        deadline: Instant::now() + bound + ANSWER_SLACK,
        slot: Slot::Sync(reply),
    }))
}

/// Encodes a SyncGroup answer for the request's version.
pub(super) fn sync_response(cx: Context, answer: SyncAnswer) -> Result<Encoded, ConnectionError> {
    let mut response = SyncGroupResponse::default()
        .with_error_code(answer.error)
        .with_assignment(answer.assignment);
    if cx.version >= 5 {
        response.protocol_type = answer.protocol_type.map(text);
        response.protocol_name = answer.protocol_name.map(text);
    }
    respond(cx, &response)
}

/// Heartbeat: keeps a member's session, and tells it when to rejoin.
pub fn heartbeat(
    broker: &Broker,
    cx: Context,
    request: HeartbeatRequest,
) -> Result<Encoded, ConnectionError> {
    let group_id = owned(&request.group_id.0);
    let code = match broker.groups.lock() {
        Err(code) => code,
        Ok(mut groups) => match groups.get(&group_id) {
            None => ResponseError::UnknownMemberId.code(),
            Some(_) => groups.touch(&group_id).heartbeat(
                request.generation_id,
                request.member_id.as_str(),
                request.group_instance_id.as_ref().map(|s| s.as_str()),
                Instant::now(),
            ),
        },
    };
    log::debug!(
        "Heartbeat group {group_id:?} member {:?} generation {}: error {code}",
        request.member_id.as_str(),
        request.generation_id
    );
    respond(cx, &HeartbeatResponse::default().with_error_code(code))
}

/// LeaveGroup: one member (v0-2) or several (v3+, with static members by instance id).
pub fn leave(
    broker: &Broker,
    cx: Context,
    request: LeaveGroupRequest,
) -> Result<Encoded, ConnectionError> {
    let group_id = owned(&request.group_id.0);
    let leaving: Vec<(String, Option<String>)> = if cx.version >= 3 {
        request
            .members
            .iter()
            .map(|m| (owned(&m.member_id), owned_opt(&m.group_instance_id)))
            .collect()
    } else {
        vec![(owned(&request.member_id), None)]
    };
    let timing = broker.groups.timing();
    let (top, codes) = match broker.groups.lock() {
        Err(code) => (code, vec![code; leaving.len()]),
        Ok(mut groups) => match groups.get(&group_id) {
            None => {
                let unknown = ResponseError::UnknownMemberId.code();
                (unknown, vec![unknown; leaving.len()])
            }
            Some(_) => {
                let group = groups.touch(&group_id);
                let now = Instant::now();
                let codes: Vec<i16> = leaving
                    .iter()
                    .map(|(id, instance)| group.leave(id, instance.as_deref(), &timing, now))
                    .collect();
                (0, codes)
            }
        },
    };
    let mut response = LeaveGroupResponse::default();
    if cx.version >= 3 {
        response.error_code = top;
        response.members = leaving
            .into_iter()
            .zip(codes)
            .map(|((id, instance), code)| {
                MemberResponse::default()
                    .with_member_id(text(id))
                    .with_group_instance_id(instance.map(text))
                    .with_error_code(code)
            })
            .collect();
    } else {
        response.error_code = codes.first().copied().unwrap_or(top);
    }
    respond(cx, &response)
}
