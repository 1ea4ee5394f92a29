//! Kafka's round-robin assignor.

use super::{Assignment, AssignmentSpec, Assignor, Layout, TopicPartition};

/// Deals all subscribed partitions to members in turn, as Kafka's round-robin assignor does.
///
/// Partitions are taken in topic-name then partition order, and members in id order as a
/// circle. Each partition goes to the next member on the circle, from just past the previous
/// recipient, that subscribes to the partition's topic. With identical subscriptions member
/// totals differ by at most one; with differing subscriptions no balance is promised. The
/// previous assignment is ignored.
///
/// Finding the next subscriber is a binary search in the topic's sorted subscriber list, so
/// the cost is `O(P log M)` for `P` partitions and `M` members even when most members skip
/// most topics.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(&self, spec: &AssignmentSpec) -> Assignment {
        let layout = Layout::new(spec);
        let mut owned = layout.empty_owned();
        // Index of the member the circle resumes at.
        let mut cursor = 0;
        for topic in &layout.topics {
            let subscribers = &topic.subscribers;
            if subscribers.is_empty() {
                continue;
            }
            for partition in 0..topic.partitions {
                let at = subscribers.partition_point(|&m| m < cursor);
                // Past the last subscriber the circle wraps to the first.
                let Some(&member) = subscribers.get(at).or_else(|| subscribers.first()) else {
                    continue;
                };
                if let Some(list) = owned.get_mut(member) {
                    list.push(TopicPartition {
                        topic: topic.name.clone(),
                        partition,
                    });
                }
                cursor = member + 1;
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
        let spec = homogeneous([0, 1], &[("t0", 3), ("t1", 3)]);
        let assignment = RoundRobinAssignor.assign(&spec);
        assert_eq!(
            assignment[&MemberId(0)],
            tps(&[("t0", 0), ("t0", 2), ("t1", 1)])
        );
        assert_eq!(
            assignment[&MemberId(1)],
            tps(&[("t0", 1), ("t1", 0), ("t1", 2)])
        );
    }

    #[test]
    fn skips_members_not_subscribed() {
        // Kafka's documented uneven case: C0 takes t0, C1 t0 and t1, C2 all three topics.
        let mut spec = homogeneous([0, 1, 2], &[("t0", 1), ("t1", 2), ("t2", 3)]);
        spec.members
            .insert(MemberId(0), BTreeSet::from([topic("t0")]));
        spec.members
            .insert(MemberId(1), BTreeSet::from([topic("t0"), topic("t1")]));
        let assignment = RoundRobinAssignor.assign(&spec);
        check_valid(&spec, &assignment);
        assert_eq!(assignment[&MemberId(0)], tps(&[("t0", 0)]));
        assert_eq!(assignment[&MemberId(1)], tps(&[("t1", 0)]));
        assert_eq!(
            assignment[&MemberId(2)],
            tps(&[("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)])
        );
    }
}
