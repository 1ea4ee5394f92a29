//! DescribeGroups (classic groups) and ListGroups (both kinds).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
};

use crate::api::text;
use crate::broker::{Broker, Context, respond};
use crate::error::ConnectionError;
use crate::response::Encoded;

/// Kafka's name for a group that does not exist.
const DEAD: &str = "Dead";

/// The type of a classic group.
const CLASSIC: &str = "classic";

/// The type (and protocol type) of a KIP-848 group.
const CONSUMER: &str = "consumer";

/// DescribeGroups: state, protocol and members of each group; an unknown group is "Dead".
pub fn describe(
    broker: &Broker,
    cx: Context,
    request: DescribeGroupsRequest,
) -> Result<Encoded, ConnectionError> {
    let locked = broker.groups.lock();
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            let groups = match &locked {
                Ok(groups) => groups,
                Err(code) => return described.with_error_code(*code),
            };
            let Some(group) = groups.get(id.0.as_str()) else {
                return described.with_group_state(text(DEAD));
            };
            described
                .with_group_state(text(group.state().name()))
                .with_protocol_type(text(group.protocol_type()))
                .with_protocol_data(text(group.protocol()))
                .with_members(
                    group
                        .members()
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(text(m.id))
                                .with_group_instance_id(if cx.version >= 4 {
                                    m.instance_id.map(text)
                                } else {
                                    None
                                })
                                .with_client_id(text(m.client_id))
                                .with_client_host(text(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    drop(locked);
    respond(cx, &DescribeGroupsResponse::default().with_groups(groups))
}

/// ListGroups: every group the coordinator knows since it started, filtered by state (v4+)
/// and type (v5+).
pub fn list(
    broker: &Broker,
    cx: Context,
    request: ListGroupsRequest,
) -> Result<Encoded, ConnectionError> {
    let groups = match broker.groups.lock() {
        Err(code) => return respond(cx, &ListGroupsResponse::default().with_error_code(code)),
        Ok(groups) => groups,
    };
    let wanted_state = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(state))
    };
    let wanted_type = |kind: &str| {
        request.types_filter.is_empty()
            || request
                .types_filter
                .iter()
                .any(|t| t.as_str().eq_ignore_ascii_case(kind))
    };
    let classic = groups
        .iter()
        .map(|(id, g)| (id, g.state().name(), g.protocol_type(), CLASSIC));
    let views: Vec<(&String, &'static str)> = groups
        .consumer_iter()
        .map(|(id, g)| (id, g.view().state))
        .collect();
    let consumer = views
        .iter()
        .map(|&(id, state)| (id, state, CONSUMER, CONSUMER));
    let mut listed: Vec<ListedGroup> = classic
        .chain(consumer)
        .filter(|&(_, state, _, kind)| wanted_type(kind) && wanted_state(state))
        .map(|(id, state, protocol_type, kind)| {
            let mut group = ListedGroup::default()
                .with_group_id(GroupId(text(id.clone())))
                .with_protocol_type(text(protocol_type));
            if cx.version >= 4 {
                group.group_state = text(state);
            }
            if cx.version >= 5 {
                group.group_type = text(kind);
            }
            group
        })
        .collect();
    drop(groups);
    listed.sort_by(|a, b| a.group_id.0.as_str().cmp(b.group_id.0.as_str()));
    respond(cx, &ListGroupsResponse::default().with_groups(listed))
}
