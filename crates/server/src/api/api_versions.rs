//! ApiVersions: which APIs and versions this server answers.
//!
//! Kafka's quirks, kept: the response header is always version 0 (no tagged fields, even for
//! v3+ requests, so a client can read it before it knows what the broker speaks), and a
//! request newer than the server knows gets error 35 (UNSUPPORTED_VERSION) in a v0 response
//! that still lists the supported ranges, so the client can retry with a version both know.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::broker::{Context, respond};
use crate::error::ConnectionError;
use crate::response::{Encoded, encode};
use crate::versions::SUPPORTED;

fn ranges() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

pub fn handle(cx: Context, _request: ApiVersionsRequest) -> Result<Encoded, ConnectionError> {
    respond(cx, &ApiVersionsResponse::default().with_api_keys(ranges()))
}

/// The answer to an ApiVersions request of a version this server does not know.
pub fn unsupported(correlation_id: i32) -> Result<Encoded, ConnectionError> {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(ranges());
    encode(correlation_id, 0, &response, &[])
}
