//! Partition assignors: deciding which member of a group consumes which partitions.
//!
//! Groups follow the KIP-848 model: whenever the group epoch is bumped (a member joined or
//! left, a subscription changed, a topic grew), the coordinator computes a new *target
//! assignment* by calling an [`Assignor`] once. An assignor is a pure function of an
//! [`AssignmentSpec`] (the members and their subscriptions, the partition count of every
//! topic, and the previous target assignment) to an [`Assignment`]. It has no state and does
//! no I/O, so the same input always yields the same output and the coordinator can recompute
//! it at will. Everything is kept in ordered maps and sets so that "the same input" includes
//! iteration order.
//!
//! Every assignor here guarantees that each partition of a topic with at least one subscriber
//! goes to exactly one member subscribed to that topic, and that only members of the spec
//! appear in the result: each one, with an empty set if it gets nothing. Partitions of topics
//! nobody subscribes to stay unassigned, and subscriptions to topics missing from
//! [`AssignmentSpec::topics`] are ignored (the topic may not have been created yet).
//!
//! Three assignors are provided; the [`Assignor`] trait lets applications plug in their own.
//!
//! * [`RangeAssignor`] (`"range"`): Kafka's range assignor. Each topic is split on its own
//!   into contiguous ranges, one per subscriber in member order, the first members taking one
//!   extra partition when the count does not divide evenly. Partition `i` of every topic with
//!   the same partition count and subscribers goes to the same member, which is what joins
//!   across co-partitioned topics need. The price is that the extras of every topic pile up on
//!   the first members, and it ignores the previous assignment.
//! * [`RoundRobinAssignor`] (`"roundrobin"`): Kafka's round-robin assignor. All subscribed
//!   partitions, sorted by topic then partition, are dealt to the members in turn, skipping
//!   members not subscribed to a partition's topic. With identical subscriptions members' totals
//!   differ by at most one; it also ignores the previous assignment, so one join reshuffles
//!   almost everything.
//! * [`UniformAssignor`] (`"uniform"`): balanced and sticky, in the spirit of Kafka's
//!   server-side uniform assignor. Each topic is balanced across its subscribers, totals are
//!   balanced across members with the same subscription, and partitions stay with their
//!   previous owner whenever balance allows, so a join or leave moves close to the minimum
//!   number of partitions. The exact guarantees are on [`UniformAssignor`]. This is the
//!   default choice: every moved partition costs a pause for its consumer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod range;
mod round_robin;
mod uniform;

pub use range::RangeAssignor;
pub use round_robin::RoundRobinAssignor;
pub use uniform::UniformAssignor;

/// A topic name, validated and cheap to clone (shared, so the thousands of
/// [`TopicPartition`]s of an assignment do not each copy the name).
pub type Topic = rill_engine::TopicName;

/// One partition of one topic: the engine's type, so a group's assignments and commits use
/// the same [`TopicPartition`] as producers and consumers.
pub use rill_engine::TopicPartition;

/// Identifies a member within its group.
///
/// A plain number keeps assignments cheap to copy and compare; any human-readable client
/// name lives with the member, not in the assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member-{}", self.0)
    }
}

/// Which partitions each member owns.
pub type Assignment = BTreeMap<MemberId, BTreeSet<TopicPartition>>;

/// Everything an [`Assignor`] may base its decision on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignmentSpec {
    /// The group's current members and the topics each one subscribes to.
    pub members: BTreeMap<MemberId, BTreeSet<Topic>>,
    /// Partition count of every known topic.
    pub topics: BTreeMap<Topic, u32>,
    /// The previous target assignment. It may mention members that have since left, topics
    /// that were unsubscribed and partitions that no longer exist; assignors ignore those
    /// entries. If it assigns one partition to several members, the lowest member id is taken
    /// as its owner.
    pub previous: Assignment,
}

/// Computes a group's target assignment.
///
/// Implementations must be deterministic (equal specs give equal assignments) and must only
/// assign a partition to a member subscribed to its topic; the coordinator relies on the first
/// to recompute assignments freely and on the second for correctness.
pub trait Assignor: Send + Sync {
    /// The name members use to request this assignor.
    fn name(&self) -> &'static str;

    /// Computes the target assignment for `spec`.
    fn assign(&self, spec: &AssignmentSpec) -> Assignment;
}

/// The spec re-indexed by position, shared by the assignors: members and topics become
/// indices into sorted vectors so the inner loops work on plain arrays instead of map
/// lookups keyed by strings.
struct Layout<'a> {
    /// Members in id order; a member's index is its position here.
    members: Vec<MemberId>,
    /// Topics with at least one partition, in name order.
    topics: Vec<TopicLayout<'a>>,
    /// For each member, the indices of the topics in `topics` it subscribes to, ascending.
    member_topics: Vec<Vec<usize>>,
}

struct TopicLayout<'a> {
    name: &'a Topic,
    partitions: u32,
    /// Indices of the subscribed members, ascending (and so in member id order).
    subscribers: Vec<usize>,
}

impl<'a> Layout<'a> {
    fn new(spec: &'a AssignmentSpec) -> Self {
        let mut topics: Vec<TopicLayout<'a>> = spec
            .topics
            .iter()
            .filter(|&(_, &partitions)| partitions > 0)
            .map(|(name, &partitions)| TopicLayout {
                name,
                partitions,
                subscribers: Vec::new(),
            })
            .collect();
        let mut members = Vec::with_capacity(spec.members.len());
        let mut member_topics: Vec<Vec<usize>> = Vec::with_capacity(spec.members.len());
        // Groups mostly share one subscription, and comparing a set with the previous
        // member's is much cheaper than looking each topic name up again.
        let mut previous: Option<&BTreeSet<Topic>> = None;
        for (member_index, (&member, subscription)) in spec.members.iter().enumerate() {
            members.push(member);
            let subscribed = match (previous, member_topics.last()) {
                (Some(last), Some(indices)) if last == subscription => indices.clone(),
                _ => subscription
                    .iter()
                    .filter_map(|topic| topics.binary_search_by(|t| (**t.name).cmp(&**topic)).ok())
                    .collect(),
            };
            for &topic_index in &subscribed {
                if let Some(t) = topics.get_mut(topic_index) {
                    t.subscribers.push(member_index);
                }
            }
            member_topics.push(subscribed);
            previous = Some(subscription);
        }
        Self {
            members,
            topics,
            member_topics,
        }
    }

    fn member_index(&self, member: MemberId) -> Option<usize> {
        self.members.binary_search(&member).ok()
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.binary_search_by(|t| (**t.name).cmp(topic)).ok()
    }

    fn is_subscribed(&self, member_index: usize, topic_index: usize) -> bool {
        self.member_topics
            .get(member_index)
            .is_some_and(|topics| topics.binary_search(&topic_index).is_ok())
    }

    /// One empty partition list per member, indexed like `members`.
    fn empty_owned(&self) -> Vec<Vec<TopicPartition>> {
        vec![Vec::new(); self.members.len()]
    }

    /// Turns per-member partition lists (from [`Self::empty_owned`]) into an [`Assignment`]
    /// that lists every member.
    fn into_assignment(self, owned: Vec<Vec<TopicPartition>>) -> Assignment {
        self.members
            .into_iter()
            .zip(owned)
            .map(|(member, partitions)| (member, partitions.into_iter().collect()))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Spec generators and invariant checks shared by the assignor tests.

    use super::*;

    /// splitmix64: deterministic, so every "random" case is reproducible from its seed.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Self(seed)
        }

        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub fn below(&mut self, bound: u64) -> u64 {
            if bound == 0 {
                0
            } else {
                self.next_u64() % bound
            }
        }

        pub fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    pub fn topic(name: &str) -> Topic {
        Topic::new(name).unwrap()
    }

    /// Members `ids`, all subscribed to every topic in `topics`.
    pub fn homogeneous(
        ids: impl IntoIterator<Item = u64>,
        topics: &[(&str, u32)],
    ) -> AssignmentSpec {
        let subscription: BTreeSet<Topic> = topics.iter().map(|(t, _)| topic(t)).collect();
        AssignmentSpec {
            members: ids
                .into_iter()
                .map(|id| (MemberId(id), subscription.clone()))
                .collect(),
            topics: topics.iter().map(|&(t, n)| (topic(t), n)).collect(),
            previous: Assignment::new(),
        }
    }

    /// A previous assignment with each partition given to a random member of `spec` (or to
    /// nobody, or to a departed member), plus some partitions that no longer exist.
    pub fn random_previous(spec: &AssignmentSpec, rng: &mut Rng) -> Assignment {
        let members: Vec<MemberId> = spec.members.keys().copied().collect();
        let mut previous = Assignment::new();
        for (name, &count) in &spec.topics {
            for partition in 0..count + 2 {
                if rng.chance(10) {
                    continue;
                }
                let owner = if members.is_empty() || rng.chance(5) {
                    MemberId(10_000 + rng.below(3))
                } else {
                    members[rng.below(members.len() as u64) as usize]
                };
                previous
                    .entry(owner)
                    .or_default()
                    .insert(TopicPartition::new(name.clone(), partition));
            }
        }
        previous
    }

    /// Up to `max_members` members with random subscriptions over up to `max_topics` topics of
    /// up to `max_partitions` partitions, some subscribing to a topic that does not exist.
    pub fn random_spec(
        rng: &mut Rng,
        max_members: u64,
        max_topics: u64,
        max_partitions: u64,
    ) -> AssignmentSpec {
        let topic_count = 1 + rng.below(max_topics);
        let topics: BTreeMap<Topic, u32> = (0..topic_count)
            .map(|t| {
                (
                    topic(&format!("t{t}")),
                    rng.below(max_partitions + 1) as u32,
                )
            })
            .collect();
        let names: Vec<Topic> = topics.keys().cloned().collect();
        let member_count = rng.below(max_members + 1);
        let mut members = BTreeMap::new();
        for _ in 0..member_count {
            let mut subscription: BTreeSet<Topic> =
                names.iter().filter(|_| rng.chance(60)).cloned().collect();
            if rng.chance(10) {
                subscription.insert(topic("missing"));
            }
            members.insert(MemberId(rng.below(1000)), subscription);
        }
        let mut spec = AssignmentSpec {
            members,
            topics,
            previous: Assignment::new(),
        };
        spec.previous = random_previous(&spec, rng);
        spec
    }

    /// Number of partitions of `topic` each member holds.
    pub fn counts(assignment: &Assignment, topic: &str) -> BTreeMap<MemberId, usize> {
        assignment
            .iter()
            .map(|(&m, parts)| (m, parts.iter().filter(|tp| &*tp.topic == topic).count()))
            .collect()
    }

    /// The invariants every assignor promises, whatever the spec.
    pub fn check_valid(spec: &AssignmentSpec, assignment: &Assignment) {
        let members: BTreeSet<&MemberId> = spec.members.keys().collect();
        let assigned: BTreeSet<&MemberId> = assignment.keys().collect();
        assert_eq!(assigned, members, "exactly the spec's members appear");

        let mut owner: BTreeMap<&TopicPartition, MemberId> = BTreeMap::new();
        for (member, partitions) in assignment {
            for tp in partitions {
                assert!(
                    spec.members[member].contains(&tp.topic),
                    "{tp} given to non-subscriber {member}"
                );
                let count = spec.topics.get(&tp.topic).copied().unwrap_or(0);
                assert!(tp.partition < count, "{tp} does not exist");
                if let Some(other) = owner.insert(tp, *member) {
                    panic!("{tp} assigned to both {other} and {member}");
                }
            }
        }
        for (name, &count) in &spec.topics {
            let subscribed = spec.members.values().any(|s| s.contains(name));
            for partition in 0..count {
                let tp = TopicPartition::new(name.clone(), partition);
                assert_eq!(
                    owner.contains_key(&tp),
                    subscribed,
                    "{tp} should be assigned exactly when someone subscribes"
                );
            }
        }
    }

    /// Each topic's subscribers hold within one partition of each other.
    pub fn check_per_topic_balance(spec: &AssignmentSpec, assignment: &Assignment) {
        for name in spec.topics.keys() {
            let counts = counts(assignment, name);
            let subscriber_counts: Vec<usize> = spec
                .members
                .iter()
                .filter(|(_, s)| s.contains(name))
                .map(|(m, _)| counts[m])
                .collect();
            if let (Some(min), Some(max)) = (
                subscriber_counts.iter().min(),
                subscriber_counts.iter().max(),
            ) {
                assert!(
                    max - min <= 1,
                    "topic {name} unbalanced: {subscriber_counts:?}"
                );
            }
        }
    }

    /// Members with the same (effective) subscription hold totals within one of each other.
    pub fn check_total_balance_per_subscription(spec: &AssignmentSpec, assignment: &Assignment) {
        let mut by_subscription: BTreeMap<Vec<&Topic>, Vec<usize>> = BTreeMap::new();
        for (member, subscription) in &spec.members {
            let effective: Vec<&Topic> = subscription
                .iter()
                .filter(|t| spec.topics.get(*t).is_some_and(|&n| n > 0))
                .collect();
            by_subscription
                .entry(effective)
                .or_default()
                .push(assignment[member].len());
        }
        for (subscription, totals) in by_subscription {
            let min = totals.iter().min().copied().unwrap_or(0);
            let max = totals.iter().max().copied().unwrap_or(0);
            assert!(
                max - min <= 1,
                "members subscribed to {subscription:?} unbalanced: {totals:?}"
            );
        }
    }

    /// Partitions whose owner in `after` differs from a surviving owner in `before`, per topic.
    pub fn moves(before: &Assignment, after: &Assignment) -> BTreeMap<Topic, usize> {
        let old_owner: BTreeMap<&TopicPartition, MemberId> = before
            .iter()
            .flat_map(|(&m, parts)| parts.iter().map(move |tp| (tp, m)))
            .collect();
        let mut moved = BTreeMap::new();
        for (&member, parts) in after {
            for tp in parts {
                if old_owner.get(tp).is_some_and(|&old| old != member) {
                    *moved.entry(tp.topic.clone()).or_insert(0) += 1;
                }
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    fn assignors() -> [&'static dyn Assignor; 3] {
        [&RangeAssignor, &RoundRobinAssignor, &UniformAssignor]
    }

    #[test]
    fn names_are_distinct_and_stable() {
        let names: Vec<&str> = assignors().iter().map(|a| a.name()).collect();
        assert_eq!(names, ["range", "roundrobin", "uniform"]);
    }

    #[test]
    fn empty_members_give_empty_assignment() {
        let mut rng = Rng::new(1);
        for assignor in assignors() {
            let mut spec = homogeneous([], &[("a", 10), ("b", 3)]);
            assert!(assignor.assign(&spec).is_empty());
            spec.previous = random_previous(&homogeneous([1, 2], &[("a", 10)]), &mut rng);
            assert!(assignor.assign(&spec).is_empty(), "{}", assignor.name());
            assert!(assignor.assign(&AssignmentSpec::default()).is_empty());
        }
    }

    #[test]
    fn members_without_partitions_are_listed_empty() {
        for assignor in assignors() {
            let mut spec = homogeneous([1, 2, 3], &[("a", 1)]);
            spec.members
                .insert(MemberId(4), BTreeSet::from([topic("missing")]));
            spec.members.insert(MemberId(5), BTreeSet::new());
            let assignment = assignor.assign(&spec);
            check_valid(&spec, &assignment);
            assert_eq!(assignment.values().map(BTreeSet::len).sum::<usize>(), 1);
            assert!(assignment[&MemberId(4)].is_empty());
            assert!(assignment[&MemberId(5)].is_empty());
        }
    }

    #[test]
    fn random_specs_are_valid_and_deterministic() {
        let mut rng = Rng::new(0x5eed);
        for _ in 0..400 {
            let spec = random_spec(&mut rng, 12, 4, 40);
            for assignor in assignors() {
                let assignment = assignor.assign(&spec);
                check_valid(&spec, &assignment);
                assert_eq!(
                    assignment,
                    assignor.assign(&spec.clone()),
                    "{}",
                    assignor.name()
                );
            }
        }
    }

    #[test]
    fn per_topic_balance_for_range_and_uniform() {
        let mut rng = Rng::new(0xba1);
        for _ in 0..400 {
            let spec = random_spec(&mut rng, 12, 4, 40);
            for assignor in [&RangeAssignor as &dyn Assignor, &UniformAssignor] {
                check_per_topic_balance(&spec, &assignor.assign(&spec));
            }
        }
    }

    #[test]
    fn total_balance_for_round_robin_and_uniform_with_identical_subscriptions() {
        for members in 1..=12u64 {
            for (a, b, c) in [(0, 0, 0), (1, 1, 1), (7, 3, 5), (13, 13, 2), (64, 1, 9)] {
                let spec = homogeneous(1..=members, &[("a", a), ("b", b), ("c", c)]);
                for assignor in [&RoundRobinAssignor as &dyn Assignor, &UniformAssignor] {
                    let assignment = assignor.assign(&spec);
                    check_valid(&spec, &assignment);
                    check_total_balance_per_subscription(&spec, &assignment);
                }
            }
        }
    }
}
