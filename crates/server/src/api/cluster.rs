//! DescribeCluster: one broker, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::text;
use crate::broker::{Broker, Context, respond};
use crate::error::ConnectionError;
use crate::response::Encoded;

pub fn describe(
    broker: &Broker,
    cx: Context,
    _request: DescribeClusterRequest,
) -> Result<Encoded, ConnectionError> {
    let (host, port) = &broker.advertised;
    let node = BrokerId(broker.config.node_id);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(text(broker.cluster_id.clone()))
        .with_controller_id(node)
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(node)
                .with_host(text(host.clone()))
                .with_port(*port),
        ]);
    respond(cx, &response)
}
