//! The group coordinator: this broker coordinates every group, classic (JoinGroup and
//! SyncGroup, client-side assignment) or KIP-848 (ConsumerGroupHeartbeat, server-side
//! assignment, see the `consumer` module). A group id is one protocol at a time, as in Kafka: a
//! heartbeat for a classic group that has members is GROUP_ID_NOT_FOUND, a JoinGroup for a
//! consumer group that has members is INCONSISTENT_GROUP_PROTOCOL, and an empty group of one
//! kind turns into the other on first use.
//!
//! All groups' membership lives behind one mutex: group requests are control path (a few per
//! member per heartbeat interval), and one lock keeps a group's transitions and its offset
//! commits' generation checks in one order. Timers (session expiry, the end of a join phase,
//! the first-join delay, a sync that never comes) are run by one thread that sleeps until the
//! earliest deadline of any group, woken early when a request brings a deadline closer; with
//! no group it sleeps (bounded) without using CPU. The thread starts with the first group
//! request, so a broker nobody uses as a coordinator runs none.
//!
//! Committed offsets are rill-group's store ([`rill_group::CommittedOffsets`]), the one the
//! engine's in-process groups use: the same group id sees the same offsets from both, and both
//! survive a restart. Group membership itself is not persisted: after a restart every group is
//! empty and its members rejoin (their old member ids are unknown).

pub(crate) mod consumer;
pub(crate) mod group;
pub(crate) mod reply;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use rill_engine::Engine;
use rill_group::CommittedOffsets;

use consumer::{ConsumerGroup, ConsumerTiming};
use group::{ClassicGroup, Timing};

/// Kafka's `offsets.topic.num.partitions` is 50; the engine pays per partition, and a group's
/// commits all go to one of them, so a few suffice.
const OFFSETS_TOPIC_PARTITIONS: u32 = 8;

/// The longest the timer thread sleeps with nothing due: a bound on every wait.
const IDLE_NAP: Duration = Duration::from_secs(60);

/// The shortest sleep between ticks.
const MIN_NAP: Duration = Duration::from_millis(1);

/// How consumer groups behave on this broker.
#[derive(Clone, Copy, Debug)]
pub struct GroupsConfig {
    /// How long the first JoinGroup of an empty group waits for more members before the first
    /// generation forms (each newcomer extends it, up to the rebalance timeout). Kafka's
    /// `group.initial.rebalance.delay.ms` is 3 s; ours is 50 ms: enough to gather consumers
    /// started together, short enough that a lone consumer (a test, a tool) barely notices.
    pub initial_rebalance_delay: Duration,
    /// Smallest session timeout a member may ask for (Kafka's
    /// `group.min.session.timeout.ms`, 6 s there; lower here so tests can detect dead members
    /// quickly).
    pub min_session_timeout: Duration,
    /// Largest session timeout a member may ask for (Kafka's `group.max.session.timeout.ms`).
    pub max_session_timeout: Duration,
    /// A KIP-848 member that sends no heartbeat for this long is removed (Kafka's
    /// `group.consumer.session.timeout.ms`, 45 s there too).
    pub consumer_session_timeout: Duration,
    /// How often KIP-848 members are told to heartbeat (Kafka's
    /// `group.consumer.heartbeat.interval.ms`, 5 s there). Members learn that the group moved
    /// (a member joined or left) only at their next heartbeat, so this bounds how long a leaving
    /// member's partitions wait for their next owners; a heartbeat costs this broker one short
    /// locked update, so ours is 100 ms. (A member waiting for partitions being released is told
    /// to heartbeat sooner still.)
    pub consumer_heartbeat_interval: Duration,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_millis(50),
            min_session_timeout: Duration::from_millis(100),
            max_session_timeout: Duration::from_secs(30 * 60),
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_millis(100),
        }
    }
}

impl GroupsConfig {
    pub(crate) fn timing(&self) -> Timing {
        Timing {
            initial_delay: self.initial_rebalance_delay,
            min_session: self.min_session_timeout,
            max_session: self.max_session_timeout,
        }
    }

    pub(crate) fn consumer_timing(&self) -> ConsumerTiming {
        ConsumerTiming {
            session: self.consumer_session_timeout,
            heartbeat: self.consumer_heartbeat_interval,
        }
    }
}

/// Every group, and what the timer thread needs.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    map: HashMap<String, ClassicGroup>,
    /// KIP-848 groups; an id is in one map at most.
    consumer: HashMap<String, ConsumerGroup>,
    /// When the timer thread will next wake on its own.
    next_wake: Option<Instant>,
    stopping: bool,
    next_member: u64,
}

impl Groups {
    /// The group, created empty if it is new.
    pub fn group(&mut self, id: &str) -> &mut ClassicGroup {
        self.map
            .entry(id.to_owned())
            .or_insert_with(ClassicGroup::new)
    }

    /// The group if it exists.
    pub fn get(&self, id: &str) -> Option<&ClassicGroup> {
        self.map.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &ClassicGroup)> {
        self.map.iter()
    }

    /// The KIP-848 group if it exists.
    pub fn consumer(&self, id: &str) -> Option<&ConsumerGroup> {
        self.consumer.get(id)
    }

    /// The KIP-848 group if it exists, to change.
    pub fn consumer_mut(&mut self, id: &str) -> Option<&mut ConsumerGroup> {
        self.consumer.get_mut(id)
    }

    pub fn consumer_iter(&self) -> impl Iterator<Item = (&String, &ConsumerGroup)> {
        self.consumer.iter()
    }

    /// Whether a classic request may use `id`: not while a KIP-848 group with members has it.
    /// An empty KIP-848 group of that id is dropped (its offsets stay).
    pub fn claim_classic(&mut self, id: &str) -> bool {
        match self.consumer.get(id) {
            Some(group) if !group.is_empty() => false,
            Some(_) => {
                self.consumer.remove(id);
                true
            }
            None => true,
        }
    }

    fn next_deadline(&self, id: &str) -> Option<Instant> {
        let classic = self.map.get(id).and_then(ClassicGroup::next_deadline);
        let consumer = self.consumer.get(id).and_then(ConsumerGroup::next_deadline);
        classic.into_iter().chain(consumer).min()
    }

    /// A member id no other member of this server's life has had: the client id, this
    /// process's start time and a counter (Kafka uses the client id and a UUID).
    pub fn new_member_id(&mut self, client_id: &str, boot: u64) -> String {
        self.next_member += 1;
        format!("{client_id}-{boot:x}-{}", self.next_member)
    }
}

#[derive(Debug)]
struct Inner {
    groups: Mutex<Groups>,
    wake: Condvar,
    config: GroupsConfig,
    /// Nanoseconds since the epoch at start: makes member ids unique across restarts.
    boot: u64,
}

/// The coordinator every connection shares.
#[derive(Debug)]
pub struct Coordinator {
    inner: Arc<Inner>,
    timer: Mutex<Option<JoinHandle<()>>>,
    offsets: Mutex<HashMap<String, Arc<Mutex<CommittedOffsets>>>>,
}

/// The groups, locked; the guard reschedules the timer when it is dropped.
pub(crate) struct Locked<'a> {
    guard: MutexGuard<'a, Groups>,
    inner: &'a Inner,
    touched: Option<String>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Groups;
    fn deref(&self) -> &Groups {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Groups {
        &mut self.guard
    }
}

impl Locked<'_> {
    /// The group a request changes, created if new; its deadlines are rescheduled on unlock.
    pub fn touch(&mut self, id: &str) -> &mut ClassicGroup {
        self.touched = Some(id.to_owned());
        self.guard.group(id)
    }

    pub fn new_member_id(&mut self, client_id: &str) -> String {
        let boot = self.inner.boot;
        self.guard.new_member_id(client_id, boot)
    }

    /// The KIP-848 group a heartbeat changes, created if new; `None` while a classic group
    /// with members has the id. An empty classic group of that id is dropped.
    pub fn touch_consumer(&mut self, id: &str) -> Option<&mut ConsumerGroup> {
        match self.guard.map.get(id) {
            Some(group) if group.state() != group::State::Empty => return None,
            Some(_) => {
                self.guard.map.remove(id);
            }
            None => {}
        }
        self.touched = Some(id.to_owned());
        let timing = self.inner.config.consumer_timing();
        Some(
            self.guard
                .consumer
                .entry(id.to_owned())
                .or_insert_with(|| ConsumerGroup::new(timing)),
        )
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(id) = self.touched.take() else {
            return;
        };
        let due = self.guard.next_deadline(&id);
        if let Some(due) = due
            && self.guard.next_wake.is_none_or(|wake| due < wake)
        {
            self.guard.next_wake = Some(due);
            self.inner.wake.notify_all();
        }
    }
}

impl Coordinator {
    pub(crate) fn new(config: GroupsConfig) -> Self {
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            inner: Arc::new(Inner {
                groups: Mutex::new(Groups::default()),
                wake: Condvar::new(),
                config,
                boot,
            }),
            timer: Mutex::new(None),
            offsets: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn timing(&self) -> Timing {
        self.inner.config.timing()
    }

    /// Locks the groups, starting the timer thread on first use. `Err` carries the error code
    /// for the client when the coordinator cannot serve (stopping, or no timer thread).
    pub(crate) fn lock(&self) -> Result<Locked<'_>, i16> {
        self.start_timer()?;
        let guard = self
            .inner
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if guard.stopping {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
        Ok(Locked {
            guard,
            inner: &self.inner,
            touched: None,
        })
    }

    fn start_timer(&self) -> Result<(), i16> {
        let mut timer = self.timer.lock().unwrap_or_else(PoisonError::into_inner);
        if timer.is_some() {
            return Ok(());
        }
        let inner = self.inner.clone();
        match std::thread::Builder::new()
            .name("rill-groups".into())
            .spawn(move || run_timer(&inner))
        {
            Ok(handle) => {
                *timer = Some(handle);
                Ok(())
            }
            Err(error) => {
                log::warn!("cannot start the group coordinator's timer thread: {error}");
                Err(ResponseError::CoordinatorNotAvailable.code())
            }
        }
    }

    /// The committed-offsets store of `group`, opened (and loaded from the log) on first use.
    pub(crate) fn offsets(
        &self,
        engine: &Engine,
        group: &str,
    ) -> Result<Arc<Mutex<CommittedOffsets>>, rill_group::GroupError> {
        let mut stores = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = stores.get(group) {
            return Ok(store.clone());
        }
        let store = Arc::new(Mutex::new(CommittedOffsets::open(
            engine,
            group,
            OFFSETS_TOPIC_PARTITIONS,
        )?));
        stores.insert(group.to_owned(), store.clone());
        Ok(store)
    }

    /// Answers every waiting group request and ends the timer thread.
    pub fn stop(&self) {
        {
            let mut groups = self
                .inner
                .groups
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            groups.stopping = true;
            for group in groups.map.values_mut() {
                group.abort_waiting(ResponseError::CoordinatorNotAvailable);
            }
            self.inner.wake.notify_all();
        }
        let handle = self
            .timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The timer thread: ticks every group whose deadline has come, sleeps until the next one.
fn run_timer(inner: &Inner) {
    let timing = inner.config.timing();
    let mut groups = inner.groups.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if groups.stopping {
            return;
        }
        let now = Instant::now();
        let next = groups
            .map
            .values_mut()
            .filter_map(|g| {
                if g.next_deadline().is_some_and(|d| d <= now) {
                    g.tick(&timing, now)
                } else {
                    g.next_deadline()
                }
            })
            .min();
        let next_consumer = groups
            .consumer
            .values_mut()
            .filter_map(|g| {
                if g.next_deadline().is_some_and(|d| d <= now) {
                    g.tick(now)
                } else {
                    g.next_deadline()
                }
            })
            .min();
        let next = next.into_iter().chain(next_consumer).min();
        groups.next_wake = next;
        // At least a millisecond: a deadline that a tick could not clear must not spin.
        let nap = next.map_or(IDLE_NAP, |at| {
            at.saturating_duration_since(now).clamp(MIN_NAP, IDLE_NAP)
        });
        groups = inner
            .wake
            .wait_timeout(groups, nap)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
