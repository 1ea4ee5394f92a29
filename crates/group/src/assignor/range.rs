//! Kafka's range assignor.

use super::{Assignment, AssignmentSpec, Assignor, Layout, TopicPartition};

/// Splits each topic into contiguous ranges, one per subscriber, as Kafka's range assignor
/// does.
///
/// For a topic with `P` partitions and `S` subscribers taken in member id order, subscriber
/// `i` gets `P / S` consecutive partitions, plus one more if `i < P % S`, starting right after
/// subscriber `i - 1`'s range. Per topic the counts therefore differ by at most one, but
/// because every topic favours the same first members, totals can differ by up to the number
/// of topics. The previous assignment is ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(&self, spec: &AssignmentSpec) -> Assignment {
        let layout = Layout::new(spec);
        let mut owned = layout.empty_owned();
        for topic in &layout.topics {
            let subscribers = topic.subscribers.len() as u64;
            if subscribers == 0 {
                continue;
            }
            let partitions = u64::from(topic.partitions);
            let (per_member, extra) = (partitions / subscribers, partitions % subscribers);
            for (i, &member) in topic.subscribers.iter().enumerate() {
                let i = i as u64;
                let start = i * per_member + i.min(extra);
                let len = per_member + u64::from(i < extra);
                if let Some(list) = owned.get_mut(member) {
                    // `start + len <= partitions`, which came from a `u32`.
                    list.extend((start..start + len).map(|p| TopicPartition {
                        topic: topic.name.clone(),
                        partition: p as u32,
                    }));
                }
            }
        }
        layout.into_assignment(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{MemberId, TopicPartition};
    use super::*;
    use std::collections::BTreeSet;

    fn tps(list: &[(&str, u32)]) -> BTreeSet<TopicPartition> {
        list.iter()
            .map(|&(t, p)| TopicPartition::new(crate::assignor::Topic::new(t).unwrap(), p))
            .collect()
    }

    #[test]
    fn kafka_documented_example() {
        // Two consumers, two topics of three partitions: the first consumer takes the extra
        // partition of both topics.
        let spec = homogeneous([0, 1], &[("t0", 3), ("t1", 3)]);
        let assignment = RangeAssignor.assign(&spec);
        assert_eq!(
            assignment[&MemberId(0)],
            tps(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)])
        );
        assert_eq!(assignment[&MemberId(1)], tps(&[("t0", 2), ("t1", 2)]));
    }

    #[test]
    fn ranges_are_contiguous_in_member_order() {
        let spec = homogeneous([30, 10, 20], &[("t", 10)]);
        let assignment = RangeAssignor.assign(&spec);
        let partitions = |id| -> Vec<u32> {
            assignment[&MemberId(id)]
                .iter()
                .map(|tp| tp.partition)
                .collect()
        };
        assert_eq!(partitions(10), [0, 1, 2, 3]);
        assert_eq!(partitions(20), [4, 5, 6]);
        assert_eq!(partitions(30), [7, 8, 9]);
    }

    #[test]
    fn only_subscribers_share_a_topic() {
        let mut spec = homogeneous([1, 2, 3], &[("a", 4), ("b", 4)]);
        spec.members
            .insert(MemberId(2), BTreeSet::from([topic("b")]));
        let assignment = RangeAssignor.assign(&spec);
        check_valid(&spec, &assignment);
        let a = counts(&assignment, "a");
        assert_eq!(
            (a[&MemberId(1)], a[&MemberId(2)], a[&MemberId(3)]),
            (2, 0, 2)
        );
    }
}
