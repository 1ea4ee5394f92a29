//! The balanced, sticky assignor.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use super::{Assignment, AssignmentSpec, Assignor, Layout, TopicPartition};

/// Balances every topic across its subscribers while moving as few partitions as possible.
///
/// # Balance
///
/// For a topic with `P` partitions and `S` subscribers, every subscriber gets `q = ⌊P/S⌋`
/// partitions of it and `e = P mod S` of them get one more (the topic's *extras*). Extras are
/// placed so that members with the same subscription (counting only topics that exist and
/// have partitions) hold within one as many extras as each other, hence totals within one
/// partition. Members with different subscriptions are balanced per topic but not in total: a
/// member subscribed to more topics carries more partitions.
///
/// # Stickiness
///
/// A previous owner is *valid* if it is still a member and still subscribed to the topic (a
/// partition listed under several members belongs to the lowest member id). A member keeps its
/// valid previous partitions, lowest-numbered first, up to its quota for the topic (`q`, or
/// `q + 1` with an extra). Whatever is not kept is dealt in partition order to members below
/// quota, in member id order. So a member never both loses and gains partitions of one topic,
/// and the partitions of a topic that change owner (or get one) number exactly the
/// subscribers' total shortfall against their quotas.
///
/// The only choice left is who gets the extras, and each extra given to a member that held
/// more than `q` of the topic saves one move. Extras are therefore dealt to such members
/// first, subject to the balance rule, and then improved by exchanges between members that
/// satisfy more of them (see `improve_extras`), which minimises moves in practice.
///
/// # How few partitions move
///
/// When the previous assignment is this assignor's output for the group before the change:
///
/// * Nothing changes: re-assigning an unchanged group reproduces the previous assignment
///   exactly, whatever the subscriptions.
///
/// For a group whose members all subscribe to one topic of `P` partitions, with `S` members:
///
/// * When a member joins, the partitions that move are exactly those the new member
///   receives, `⌊P/(S+1)⌋` or `⌈P/(S+1)⌉`: no partition goes anywhere but to the newcomer.
/// * When a member leaves, exactly the partitions it held move; nobody else's do.
/// * When the topic gains partitions, no existing partition moves.
///
/// With several topics, members still receive only what their quotas require, but keeping
/// totals balanced occasionally forces an extra onto a member that did not hold one, so a
/// topic can move a partition or two beyond the single-topic bounds above. (A member that
/// drops a topic, for instance, moves its partitions of that topic, and other topics' only if
/// their extras must be rebalanced.) The tests sweep
/// joins and leaves in groups of 1 to 12 members over 1 to 4 topics of up to 64 partitions
/// and require that at most 1 topic in 200 exceeds those bounds, by at most two partitions.
///
/// Previous entries for departed members, unsubscribed topics or partitions beyond a topic's
/// count are ignored; their partitions are dealt as if unowned.
///
/// # Cost
///
/// For `P` partitions, `M` members, `T` topics and `R` previous entries: `O(P)` to place
/// partitions, `O(R (log M + log T))` to read the previous assignment, `O(S log S)` per topic
/// to deal its extras among `S` subscribers, and the `O(P log P)` of building the ordered
/// result. The exchange step is capped at a work budget linear in the number of
/// subscriptions; when the cap is hit the result is still valid, balanced and deterministic,
/// only possibly less sticky. No step scans partitions × members.
#[derive(Clone, Copy, Debug, Default)]
pub struct UniformAssignor;

impl Assignor for UniformAssignor {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn assign(&self, spec: &AssignmentSpec) -> Assignment {
        let layout = Layout::new(spec);
        let owners = previous_owners(&layout, spec);
        let class_of = subscription_classes(&layout);
        let class_count = class_of.iter().max().map_or(0, |&c| c + 1);
        let members = layout.members.len();

        // Every member index below comes from `layout`, so indexing by it is in range.
        // Per-topic scratch is reset by walking the topic's subscribers, so a topic costs
        // O(its partitions + its subscribers) however many members the group has.
        let mut previously_held = vec![0u64; members];
        let mut extras_held = vec![0u64; members];
        let mut dealer = ExtraDealer::new(class_count);
        let mut plans = Vec::with_capacity(layout.topics.len());
        for (topic, topic_owners) in layout.topics.iter().zip(&owners) {
            let subscribers = &topic.subscribers;
            let base = u64::from(topic.partitions) / (subscribers.len().max(1) as u64);
            let extra_count = u64::from(topic.partitions) % (subscribers.len().max(1) as u64);
            for &owner in topic_owners.iter().flatten() {
                previously_held[owner] += 1;
            }
            let wanting: Vec<usize> = subscribers
                .iter()
                .copied()
                .filter(|&m| previously_held[m] > base)
                .collect();
            let mut extras = if subscribers.is_empty() {
                Vec::new()
            } else {
                dealer.deal(extra_count, subscribers, &class_of, &extras_held, |m| {
                    previously_held[m] > base
                })
            };
            extras.sort_unstable();
            for &member in &extras {
                extras_held[member] += 1;
            }
            for &member in subscribers {
                previously_held[member] = 0;
            }
            plans.push(TopicPlan {
                base,
                subscribers: subscribers.len(),
                extras,
                wanting,
            });
        }

        improve_extras(
            &mut plans,
            &class_of,
            class_count,
            &mut extras_held,
            |member, topic| layout.is_subscribed(member, topic),
        );

        let mut owned = layout.empty_owned();
        let mut quota = vec![0u64; members];
        let mut kept = vec![0u64; members];
        let mut unkept = Vec::new();
        for ((topic, topic_owners), plan) in layout.topics.iter().zip(&owners).zip(&plans) {
            let subscribers = &topic.subscribers;
            for &member in subscribers {
                quota[member] = plan.base;
            }
            for &member in &plan.extras {
                quota[member] += 1;
            }
            let tp = |partition: usize| TopicPartition {
                topic: topic.name.clone(),
                // Indices come from `0..topic.partitions`, a `u32`.
                partition: partition as u32,
            };
            unkept.clear();
            for (partition, &owner) in topic_owners.iter().enumerate() {
                match owner {
                    Some(owner) if kept[owner] < quota[owner] => {
                        kept[owner] += 1;
                        owned[owner].push(tp(partition));
                    }
                    _ => unkept.push(partition),
                }
            }
            // Quotas sum to the partition count, so the unkept partitions exactly cover the
            // shortfalls.
            let mut unkept_iter = unkept.iter();
            for &member in subscribers {
                let shortfall = (quota[member] - kept[member]) as usize;
                owned[member].extend(unkept_iter.by_ref().take(shortfall).map(|&p| tp(p)));
            }
            for &member in subscribers {
                quota[member] = 0;
                kept[member] = 0;
            }
        }
        layout.into_assignment(owned)
    }
}

/// The balance decision for one topic, before partitions are placed.
struct TopicPlan {
    /// Partitions every subscriber gets.
    base: u64,
    /// Subscribers that get one more, ascending.
    extras: Vec<usize>,
    /// How many members subscribe to the topic.
    subscribers: usize,
    /// Subscribers that previously held more than `base` of the topic, ascending: for them an
    /// extra saves a move.
    wanting: Vec<usize>,
}

impl TopicPlan {
    fn wants(&self, member: usize) -> bool {
        self.wanting.binary_search(&member).is_ok()
    }

    fn has_extra(&self, member: usize) -> bool {
        self.extras.binary_search(&member).is_ok()
    }

    fn replace_extra(&mut self, from: usize, to: usize) {
        if let Ok(index) = self.extras.binary_search(&from) {
            self.extras[index] = to;
            self.extras.sort_unstable();
        }
    }
}

/// Hands extras to the members that want them where the dealer's topic-by-topic order could
/// not.
///
/// The dealer keeps every class balanced after each topic, which is stricter than needed:
/// only the final totals must be within one. So a member that wants an extra of a later topic
/// may have been turned away for already holding more than its classmates at that point.
///
/// Each round starts from an extra held by a member that does not want it (the giver) and
/// searches, breadth first, for a chain of hand-overs that ends in a balanced state: the
/// giver's extra goes to a member that wants it; that member either keeps it (if the giver's
/// and its own class stay within one) or passes one of its own extras on, to a member that
/// wants that one, and so on, until a member keeps its extra or hands one back to the giver.
/// Every hand-over goes to a member that wants the extra (except the final one back to the
/// giver, which only needs the giver to want it at least as much as the member returning
/// it), so each applied chain satisfies at least one more want, i.e. saves at least one move.
/// A search reaches each member at most once. A work budget proportional to the number of
/// subscriptions keeps pathological inputs cheap, at worst leaving a few moves unsaved; it
/// counts steps, not time, so the result stays deterministic.
fn improve_extras(
    plans: &mut [TopicPlan],
    class_of: &[usize],
    class_count: usize,
    extras_held: &mut [u64],
    is_subscribed: impl Fn(usize, usize) -> bool,
) {
    let members = class_of.len();
    let mut class_members = vec![Vec::new(); class_count];
    for (member, &class) in class_of.iter().enumerate() {
        class_members[class].push(member);
    }
    let range_of = |members: &[usize], extras_held: &[u64]| {
        let min = members.iter().map(|&m| extras_held[m]).min().unwrap_or(0);
        let max = members.iter().map(|&m| extras_held[m]).max().unwrap_or(0);
        (min, max)
    };
    let mut class_range: Vec<(u64, u64)> = class_members
        .iter()
        .map(|members| range_of(members, extras_held))
        .collect();
    // Topics in which each member holds an extra.
    let mut member_extras: Vec<Vec<usize>> = vec![Vec::new(); members];
    for (topic, plan) in plans.iter().enumerate() {
        for &member in &plan.extras {
            member_extras[member].push(topic);
        }
    }
    let subscriptions: usize = plans.iter().map(|p| p.subscribers).sum();
    let mut budget = 64 * (subscriptions + members + plans.len()) + 4096;

    // Breadth-first search state: how each reached member got its extra.
    let mut came_from: Vec<Option<(usize, usize)>> = vec![None; members];
    let mut reached = Vec::new();
    let mut queue = VecDeque::new();

    loop {
        let mut improved = false;
        for start_topic in 0..plans.len() {
            let plan = &plans[start_topic];
            if plan.wanting.iter().all(|&m| plan.has_extra(m)) {
                continue;
            }
            let givers: Vec<usize> = plan
                .extras
                .iter()
                .copied()
                .filter(|&m| !plan.wants(m))
                .collect();
            for giver in givers {
                if !plans[start_topic].has_extra(giver) {
                    continue;
                }
                for member in reached.drain(..) {
                    came_from[member] = None;
                }
                queue.clear();
                for &taker in &plans[start_topic].wanting {
                    if !plans[start_topic].has_extra(taker) {
                        came_from[taker] = Some((giver, start_topic));
                        reached.push(taker);
                        queue.push_back(taker);
                    }
                }

                let mut end = None;
                while let Some(member) = queue.pop_front() {
                    budget = budget.saturating_sub(1 + member_extras[member].len());
                    if budget == 0 {
                        return;
                    }
                    let (giver_class, class) = (class_of[giver], class_of[member]);
                    let keeps = if giver_class == class {
                        extras_held[giver] > extras_held[member]
                    } else {
                        extras_held[giver] == class_range[giver_class].1
                            && extras_held[member] == class_range[class].0
                    };
                    if keeps {
                        end = Some((member, None));
                        break;
                    }
                    let back = member_extras[member].iter().copied().find(|&topic| {
                        let plan = &plans[topic];
                        !plan.has_extra(giver)
                            && (plan.wants(giver) || !plan.wants(member))
                            && is_subscribed(giver, topic)
                    });
                    if let Some(topic) = back {
                        end = Some((member, Some(topic)));
                        break;
                    }
                    for &topic in &member_extras[member] {
                        let plan = &plans[topic];
                        budget = budget.saturating_sub(plan.wanting.len());
                        for &next in &plan.wanting {
                            if next != giver && came_from[next].is_none() && !plan.has_extra(next) {
                                came_from[next] = Some((member, topic));
                                reached.push(next);
                                queue.push_back(next);
                            }
                        }
                    }
                }

                let Some((last, back)) = end else {
                    continue;
                };
                let mut hand_over = |from: usize, to: usize, topic: usize| {
                    plans[topic].replace_extra(from, to);
                    member_extras[from].retain(|&t| t != topic);
                    member_extras[to].push(topic);
                };
                match back {
                    Some(topic) => hand_over(last, giver, topic),
                    None => {
                        extras_held[giver] -= 1;
                        extras_held[last] += 1;
                        for class in [class_of[giver], class_of[last]] {
                            class_range[class] = range_of(&class_members[class], extras_held);
                        }
                    }
                }
                let mut to = last;
                while let Some((from, topic)) = came_from[to] {
                    hand_over(from, to, topic);
                    if from == giver {
                        break;
                    }
                    to = from;
                }
                improved = true;
            }
        }
        if !improved {
            break;
        }
    }
}

/// For each topic of `layout`, the previous owner (a member index) of each partition, if that
/// owner is still a member and still subscribed. Where the previous assignment gave a
/// partition to several members, the lowest member id wins, since `previous` iterates in id
/// order.
fn previous_owners(layout: &Layout<'_>, spec: &AssignmentSpec) -> Vec<Vec<Option<usize>>> {
    let mut owners: Vec<Vec<Option<usize>>> = layout
        .topics
        .iter()
        .map(|t| vec![None; t.partitions as usize])
        .collect();
    for (&member, partitions) in &spec.previous {
        let Some(member_index) = layout.member_index(member) else {
            continue;
        };
        // Partitions arrive grouped by topic, so remember the last topic looked up.
        let mut last: Option<(&str, Option<usize>)> = None;
        for tp in partitions {
            let topic_index = match last {
                Some((name, index)) if name == &*tp.topic => index,
                _ => {
                    let index = layout
                        .topic_index(&tp.topic)
                        .filter(|&t| layout.is_subscribed(member_index, t));
                    last = Some((&tp.topic, index));
                    index
                }
            };
            let slot = topic_index
                .and_then(|t| owners.get_mut(t))
                .and_then(|o| o.get_mut(tp.partition as usize));
            if let Some(slot) = slot
                && slot.is_none()
            {
                *slot = Some(member_index);
            }
        }
    }
    owners
}

/// Numbers each distinct effective subscription, returning each member's number. Members
/// with equal numbers must end up with totals within one of each other.
fn subscription_classes(layout: &Layout<'_>) -> Vec<usize> {
    let mut classes: BTreeMap<&[usize], usize> = BTreeMap::new();
    layout
        .member_topics
        .iter()
        .map(|topics| {
            let next = classes.len();
            *classes.entry(topics.as_slice()).or_insert(next)
        })
        .collect()
}

/// Chooses which subscribers of a topic receive its extras.
///
/// Within a subscription class, members holding the fewest extras so far (the class's *low*
/// members) must be served before any other member of the class, which keeps extras, and so
/// totals, within one across the class: serving members that are all at the minimum, or all of
/// them before anyone above it, never widens the spread. Among the members allowed at a given
/// moment, those that previously held more than the base quota go first, because the extra
/// lets them keep a partition instead of receiving one; the rest go in member id order.
struct ExtraDealer {
    /// Per class: the fewest extras any of its members holds, for this topic's subscribers.
    class_min: Vec<u64>,
    /// Per class: low members not yet served for this topic.
    lows_left: Vec<usize>,
    /// Per class: members above the minimum, released once the class's lows are all served.
    highs: Vec<Vec<usize>>,
    /// Candidates currently allowed, best first: (held more than base, lower index first).
    ready: BinaryHeap<(bool, Reverse<usize>)>,
}

impl ExtraDealer {
    fn new(classes: usize) -> Self {
        Self {
            class_min: vec![u64::MAX; classes],
            lows_left: vec![0; classes],
            highs: vec![Vec::new(); classes],
            ready: BinaryHeap::new(),
        }
    }

    /// Picks `count` (fewer than `subscribers.len()`) subscribers to receive an extra.
    /// `class_of` and `extras_held` are indexed by member index.
    fn deal(
        &mut self,
        count: u64,
        subscribers: &[usize],
        class_of: &[usize],
        extras_held: &[u64],
        wants_extra: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        if count == 0 {
            return Vec::new();
        }
        for &member in subscribers {
            let min = &mut self.class_min[class_of[member]];
            *min = (*min).min(extras_held[member]);
        }
        let is_low =
            |class_min: &[u64], member: usize| class_min[class_of[member]] == extras_held[member];
        self.ready.clear();
        for &member in subscribers {
            if is_low(&self.class_min, member) {
                self.lows_left[class_of[member]] += 1;
                self.ready.push((wants_extra(member), Reverse(member)));
            } else {
                self.highs[class_of[member]].push(member);
            }
        }

        let mut chosen = Vec::with_capacity(count as usize);
        while (chosen.len() as u64) < count {
            let Some((_, Reverse(member))) = self.ready.pop() else {
                break;
            };
            chosen.push(member);
            let class = class_of[member];
            if is_low(&self.class_min, member) {
                self.lows_left[class] -= 1;
                if self.lows_left[class] == 0 {
                    let released = self.highs[class].drain(..);
                    self.ready
                        .extend(released.map(|m| (wants_extra(m), Reverse(m))));
                }
            }
        }

        for &member in subscribers {
            let class = class_of[member];
            self.class_min[class] = u64::MAX;
            self.lows_left[class] = 0;
            self.highs[class].clear();
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{MemberId, Topic};
    use super::*;
    use std::collections::BTreeSet;

    /// A balanced starting point that is not a canonical layout: the assignor's answer to a
    /// random previous assignment, installed as the spec's previous assignment.
    fn settle(spec: &mut AssignmentSpec, rng: &mut Rng) -> Assignment {
        spec.previous = random_previous(spec, rng);
        let assignment = UniformAssignor.assign(spec);
        spec.previous = assignment.clone();
        assignment
    }

    fn fresh_id(spec: &AssignmentSpec, rng: &mut Rng) -> MemberId {
        loop {
            let id = MemberId(rng.below(100));
            if !spec.members.contains_key(&id) {
                return id;
            }
        }
    }

    fn check_all(spec: &AssignmentSpec, assignment: &Assignment) {
        check_valid(spec, assignment);
        check_per_topic_balance(spec, assignment);
        check_total_balance_per_subscription(spec, assignment);
    }

    fn random_ids(rng: &mut Rng, n: u64) -> BTreeSet<u64> {
        let mut ids = BTreeSet::new();
        while (ids.len() as u64) < n {
            ids.insert(rng.below(100));
        }
        ids
    }

    #[test]
    fn random_specs_are_balanced() {
        let mut rng = Rng::new(0xbeef);
        for _ in 0..1000 {
            let spec = random_spec(&mut rng, 12, 5, 40);
            check_all(&spec, &UniformAssignor.assign(&spec));
        }
    }

    #[test]
    fn settled_assignment_is_a_fixed_point() {
        let mut rng = Rng::new(0xf1);
        for _ in 0..1000 {
            let spec = random_spec(&mut rng, 12, 5, 40);
            let first = UniformAssignor.assign(&spec);
            let mut again = spec.clone();
            again.previous = first.clone();
            assert_eq!(first, UniformAssignor.assign(&again), "spec {spec:?}");
        }
    }

    #[test]
    fn join_moves_only_the_new_members_share() {
        let mut rng = Rng::new(0x101);
        for n in 1..=12 {
            for partitions in 0..=64 {
                for _ in 0..3 {
                    let mut spec = homogeneous(random_ids(&mut rng, n), &[("t", partitions)]);
                    let before = settle(&mut spec, &mut rng);
                    let joiner = fresh_id(&spec, &mut rng);
                    spec.members.insert(joiner, BTreeSet::from([topic("t")]));

                    let after = UniformAssignor.assign(&spec);
                    check_all(&spec, &after);
                    let moved = moves(&before, &after).get("t").copied().unwrap_or(0);
                    let bound = (partitions as usize).div_ceil(n as usize + 1);
                    assert!(
                        moved <= bound,
                        "n={n} p={partitions}: moved {moved} > {bound}"
                    );
                    assert_eq!(moved, after[&joiner].len(), "only the joiner receives");
                }
            }
        }
    }

    #[test]
    fn leave_moves_only_the_leavers_partitions() {
        let mut rng = Rng::new(0x202);
        for n in 2..=13 {
            for partitions in 0..=64 {
                for _ in 0..3 {
                    let mut spec = homogeneous(random_ids(&mut rng, n), &[("t", partitions)]);
                    let before = settle(&mut spec, &mut rng);
                    let leaver = *spec.members.keys().nth(rng.below(n) as usize).unwrap();
                    spec.members.remove(&leaver);

                    let after = UniformAssignor.assign(&spec);
                    check_all(&spec, &after);
                    let moved = moves(&before, &after).get("t").copied().unwrap_or(0);
                    assert_eq!(moved, before[&leaver].len(), "n={n} p={partitions}");
                }
            }
        }
    }

    /// With several topics, totals balance can cost a little beyond the single-topic bounds;
    /// this pins down how little, over the same kind of sweep.
    #[test]
    fn join_and_leave_with_several_topics_stay_near_the_bounds() {
        let mut rng = Rng::new(0x303);
        let (mut events, mut over_bound, mut worst) = (0, 0, 0);
        for n in 1..=12 {
            for _ in 0..100 {
                let names = ["a", "b", "c", "d"];
                let topics: Vec<(&str, u32)> = names[..1 + rng.below(4) as usize]
                    .iter()
                    .map(|&name| (name, rng.below(65) as u32))
                    .collect();
                let mut spec = homogeneous(random_ids(&mut rng, n), &topics);
                let before = settle(&mut spec, &mut rng);
                let subscription: BTreeSet<Topic> = topics.iter().map(|(t, _)| topic(t)).collect();

                let mut joined = spec.clone();
                joined
                    .members
                    .insert(fresh_id(&spec, &mut rng), subscription);
                let after_join = UniformAssignor.assign(&joined);
                check_all(&joined, &after_join);

                let mut left = spec.clone();
                let leaver = *spec.members.keys().nth(rng.below(n) as usize).unwrap();
                left.members.remove(&leaver);
                let after_leave = UniformAssignor.assign(&left);
                check_all(&left, &after_leave);

                let joined_moves = moves(&before, &after_join);
                let left_moves = moves(&before, &after_leave);
                let leaver_held = |t: &str| counts(&before, t)[&leaver];
                for &(t, partitions) in &topics {
                    let join_bound = (partitions as usize).div_ceil(n as usize + 1);
                    let join_excess = joined_moves
                        .get(t)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(join_bound);
                    let leave_excess = left_moves
                        .get(t)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(leaver_held(t));
                    for excess in [join_excess, leave_excess] {
                        events += 1;
                        over_bound += usize::from(excess > 0);
                        worst = worst.max(excess);
                    }
                }
            }
        }
        assert!(
            worst <= 2,
            "a topic moved {worst} partitions beyond its bound"
        );
        assert!(
            over_bound * 200 <= events,
            "{over_bound} of {events} topic events exceeded their bound"
        );
    }

    #[test]
    fn members_keep_previous_partitions_up_to_their_quota() {
        let mut rng = Rng::new(0x404);
        for _ in 0..1000 {
            let spec = random_spec(&mut rng, 12, 4, 40);
            let after = UniformAssignor.assign(&spec);
            for (member, partitions) in &after {
                let valid_previous: BTreeSet<&TopicPartition> = spec
                    .previous
                    .get(member)
                    .into_iter()
                    .flatten()
                    .filter(|tp| {
                        spec.members[member].contains(&tp.topic)
                            && tp.partition < spec.topics.get(&tp.topic).copied().unwrap_or(0)
                            && !spec
                                .previous
                                .range(..*member)
                                .any(|(_, parts)| parts.contains(*tp))
                    })
                    .collect();
                for name in spec.topics.keys() {
                    let lost = valid_previous
                        .iter()
                        .any(|tp| &tp.topic == name && !partitions.contains(*tp));
                    let gained = partitions
                        .iter()
                        .any(|tp| &tp.topic == name && !valid_previous.contains(tp));
                    assert!(
                        !(lost && gained),
                        "{member} lost and gained partitions of {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn growing_a_topic_keeps_existing_partitions() {
        let mut rng = Rng::new(0x505);
        for n in 1..=8 {
            for partitions in 0..=40 {
                let mut spec = homogeneous(random_ids(&mut rng, n), &[("t", partitions)]);
                let before = settle(&mut spec, &mut rng);
                spec.topics
                    .insert(topic("t"), partitions + 1 + rng.below(20) as u32);
                let after = UniformAssignor.assign(&spec);
                check_all(&spec, &after);
                assert!(moves(&before, &after).is_empty(), "n={n} p={partitions}");
            }
        }
    }

    #[test]
    fn unsubscribing_from_one_topic_leaves_the_other_alone() {
        let mut spec = homogeneous([1, 2, 3], &[("a", 9), ("b", 6)]);
        let mut rng = Rng::new(0x606);
        let before = settle(&mut spec, &mut rng);
        spec.members
            .insert(MemberId(2), BTreeSet::from([topic("a")]));
        let after = UniformAssignor.assign(&spec);
        check_all(&spec, &after);
        let moved = moves(&before, &after);
        assert_eq!(moved.get("a"), None);
        assert_eq!(moved.get("b"), Some(&counts(&before, "b")[&MemberId(2)]));
    }

    #[test]
    fn a_thousand_partitions_over_ten_members() {
        let mut rng = Rng::new(0x707);
        let mut spec = homogeneous(0..10, &[("events", 1000)]);
        spec.previous = random_previous(&spec, &mut rng);
        let first = UniformAssignor.assign(&spec);
        check_all(&spec, &first);
        spec.previous = first;
        spec.members
            .insert(MemberId(10), BTreeSet::from([topic("events")]));
        let after = UniformAssignor.assign(&spec);
        check_all(&spec, &after);
        assert!(
            after
                .values()
                .all(|parts| parts.len() == 90 || parts.len() == 91)
        );
        assert_eq!(
            moves(&spec.previous, &after)["events"],
            after[&MemberId(10)].len()
        );
    }

    #[test]
    fn repeated_runs_agree() {
        let mut rng = Rng::new(0x808);
        for _ in 0..200 {
            let spec = random_spec(&mut rng, 12, 4, 40);
            let runs: Vec<Assignment> = (0..3).map(|_| UniformAssignor.assign(&spec)).collect();
            assert!(runs.windows(2).all(|w| w[0] == w[1]));
        }
    }
}
