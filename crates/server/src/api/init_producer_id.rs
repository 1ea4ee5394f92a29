//! InitProducerId: a fresh producer id for an idempotent producer.
//!
//! Ids come from the engine ([`rill_engine::Engine::init_producer_id`]), which reserves them on
//! disk before handing them out, so an id is never given twice, restarts and crashes included.
//! As Kafka's coordinator does for a request without a transactional id, every request gets a
//! new id at epoch 0, whatever id and epoch it carries (v3+ lets a client name its current
//! ones to have its epoch bumped; for a producer without a transactional id Kafka answers that
//! with a new id too).
//!
//! A transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED: this broker lets
//! no transactional id be used, which is what the code says, and every client treats it as
//! fatal at once. The codes a coordinator would give while starting up
//! (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) are retriable: the client would retry until
//! its timeout and report a timeout instead of the reason.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::{Broker, Context, respond};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::Encoded;

pub fn handle(
    broker: &Broker,
    cx: Context,
    request: InitProducerIdRequest,
) -> Result<Encoded, ConnectionError> {
    let refused = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(id) = request.transactional_id.as_ref() {
        log::info!(
            "InitProducerId for transactional id {:?} refused: transactions are not offered",
            id.0.as_str()
        );
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return respond(cx, &refused.with_error_code(code));
    }
    let response = match broker.engine.init_producer_id() {
        Ok(identity) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(identity.id))
            .with_producer_epoch(identity.epoch),
        Err(error) => {
            log::error!("InitProducerId failed: {error}");
            refused.with_error_code(code_of(&error))
        }
    };
    respond(cx, &response)
}
