//! FindCoordinator: this broker coordinates every group. Transactions are not offered, so a
//! transaction coordinator is never found.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::api::text;
use crate::broker::{Broker, Context, respond};
use crate::error::ConnectionError;
use crate::response::Encoded;

/// `key_type` of a consumer group.
const GROUP: i8 = 0;

pub fn handle(
    broker: &Broker,
    cx: Context,
    request: FindCoordinatorRequest,
) -> Result<Encoded, ConnectionError> {
    let keys = if cx.version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| find(broker, key, request.key_type))
        .collect();
    let mut response = FindCoordinatorResponse::default();
    if cx.version >= 4 {
        response.coordinators = coordinators;
    } else if let Some(one) = coordinators.into_iter().next() {
        response.error_code = one.error_code;
        response.error_message = one.error_message;
        response.node_id = one.node_id;
        response.host = one.host;
        response.port = one.port;
    }
    respond(cx, &response)
}

fn find(broker: &Broker, key: StrBytes, key_type: i8) -> Coordinator {
    let coordinator = Coordinator::default().with_key(key);
    if key_type != GROUP {
        // Not COORDINATOR_NOT_AVAILABLE: clients retry that until their transaction timeout.
        // The code InitProducerId answers a transactional id with is fatal to every client,
        // so a transactional producer stops at once and says why.
        return coordinator
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_error_message(Some(text("transactions are not offered by this broker")))
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    let (host, port) = &broker.advertised;
    coordinator
        .with_node_id(BrokerId(broker.config.node_id))
        .with_host(text(host.clone()))
        .with_port(*port)
}
