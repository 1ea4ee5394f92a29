//! The APIs this server answers, at exactly the versions it implements.
//!
//! The ranges start at the oldest version the codec (`kafka-protocol`, from Kafka 4's schemas)
//! knows and end at the newest whose fields this server fills in. Produce 13 and Fetch 13 name
//! topics by their persisted id; Fetch 14+ is left out (its additions serve tiered storage and
//! replicas, which rill does not have).

use kafka_protocol::messages::ApiKey;

/// (api key, min version, max version), sorted by key.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 13),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    // Without a transactional id only (no transactions API is listed here).
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The served range of `api_key`, if it is served at all.
pub fn range_of(api_key: i16) -> Option<(ApiKey, i16, i16)> {
    SUPPORTED
        .iter()
        .copied()
        .find(|(key, _, _)| *key as i16 == api_key)
}

/// Whether `version` of `api_key` is served.
pub fn is_supported(api_key: i16, version: i16) -> bool {
    range_of(api_key).is_some_and(|(_, min, max)| (min..=max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn every_range_is_within_what_the_codec_knows() {
        for (key, min, max) in SUPPORTED {
            let known = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(
                known.min <= *min && *max <= known.max,
                "{key:?}: {min}..={max} vs {known}"
            );
        }
    }

    #[test]
    fn versions_beyond_what_is_implemented_are_not_advertised() {
        assert!(is_supported(ApiKey::Produce as i16, 13));
        assert!(is_supported(ApiKey::Fetch as i16, 13));
        assert!(!is_supported(ApiKey::Fetch as i16, 14));
        assert!(!is_supported(ApiKey::FindCoordinator as i16, 5));
    }

    #[test]
    fn idempotence_is_offered_and_transactions_are_not() {
        assert!(is_supported(ApiKey::InitProducerId as i16, 4));
        for key in [
            ApiKey::AddPartitionsToTxn,
            ApiKey::AddOffsetsToTxn,
            ApiKey::EndTxn,
            ApiKey::WriteTxnMarkers,
            ApiKey::TxnOffsetCommit,
            ApiKey::DescribeTransactions,
            ApiKey::ListTransactions,
        ] {
            assert!(range_of(key as i16).is_none(), "{key:?} is advertised");
        }
    }
}
