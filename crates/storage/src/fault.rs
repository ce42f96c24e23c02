//! Fault injection for tests: [`FaultyStorage`] and [`FaultyCoordinator`] wrap any backend and
//! implement the same traits, failing, delaying or tearing calls as a shared [`FaultHandle`] says.
//!
//! The handle is cheap to clone and is changed while the log runs, so a test can break storage
//! under a running pipeline and heal it again. Every injected failure is
//! [`Error::Unavailable`](crate::Error::Unavailable) whose source is an [`InjectedFault`], so a
//! test can tell injected failures from real ones with [`is_injected`].
//!
//! Three kinds of failure model what real stores do:
//!
//! - **fail**: the call is refused before it reaches the backend (nothing changes), as when a
//!   request never leaves the machine;
//! - **lost reply**: the call reaches the backend and takes effect, then the caller is told it
//!   failed, as when a response times out after the store committed;
//! - **torn write**: `write_objects` writes only its first `K` objects, then fails, as when a
//!   process or connection dies part way through a multi-object upload.
//!
//! A delay can be added before any operation, to widen race windows or batch requests up. A
//! test that needs an exact interleaving holds calls instead: before they reach the backend
//! ([`FaultHandle::hold_calls`]) or after they took effect ([`FaultHandle::hold_replies`]), until
//! it releases them.
//!
//! ```
//! # tokio_test_block_on(async {
//! use rekor_storage::fault::{FaultyStorage, Operation, is_injected};
//! use rekor_storage::{memory::MemoryStorage, Object, Storage};
//! let storage = FaultyStorage::new(MemoryStorage::default());
//! let faults = storage.handle();
//! faults.fail_next(Operation::WriteObjects, 1);
//! let object = Object::new("tile/0/000.p/1", vec![0u8; 32]);
//! let error = storage.write_objects(vec![object.clone()]).await.unwrap_err();
//! assert!(is_injected(&error));
//! storage.write_objects(vec![object]).await?;
//! assert_eq!(faults.injected(Operation::WriteObjects), 1);
//! # Ok::<(), rekor_storage::Error>(()) });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Coordinator, Error, Object, ObjectVersion, Result, SequenceLeaf, SequenceState, Storage,
    Versioned,
};

/// The backend name injected errors carry.
const BACKEND: &str = "fault";

/// A storage or coordinator operation that faults can be attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`Storage::write_objects`].
    WriteObjects,
    /// [`Storage::read`].
    Read,
    /// [`Storage::read_checkpoint`].
    ReadCheckpoint,
    /// [`Storage::write_checkpoint`].
    WriteCheckpoint,
    /// [`Storage::delete_partials`].
    DeletePartials,
    /// [`Coordinator::sequence`].
    Sequence,
    /// [`Coordinator::lookup`].
    Lookup,
    /// [`Coordinator::state`].
    State,
    /// [`Coordinator::read_sequenced`].
    ReadSequenced,
    /// [`Coordinator::mark_integrated`].
    MarkIntegrated,
    /// [`Coordinator::health`] (synchronous: only refusals apply, no delays, holds or lost replies).
    Health,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 11] = [
        Operation::WriteObjects,
        Operation::Read,
        Operation::ReadCheckpoint,
        Operation::WriteCheckpoint,
        Operation::DeletePartials,
        Operation::Sequence,
        Operation::Lookup,
        Operation::State,
        Operation::ReadSequenced,
        Operation::MarkIntegrated,
        Operation::Health,
    ];

    /// The trait method's name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::WriteObjects => "write_objects",
            Operation::Read => "read",
            Operation::ReadCheckpoint => "read_checkpoint",
            Operation::WriteCheckpoint => "write_checkpoint",
            Operation::DeletePartials => "delete_partials",
            Operation::Sequence => "sequence",
            Operation::Lookup => "lookup",
            Operation::State => "state",
            Operation::ReadSequenced => "read_sequenced",
            Operation::MarkIntegrated => "mark_integrated",
            Operation::Health => "health",
        }
    }

    fn slot(self) -> usize {
        match self {
            Operation::WriteObjects => 0,
            Operation::Read => 1,
            Operation::ReadCheckpoint => 2,
            Operation::WriteCheckpoint => 3,
            Operation::Sequence => 4,
            Operation::Lookup => 5,
            Operation::State => 6,
            Operation::ReadSequenced => 7,
            Operation::MarkIntegrated => 8,
            Operation::DeletePartials => 9,
            Operation::Health => 10,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an injected failure behaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// Refused before reaching the backend: nothing changed.
    Refused,
    /// The backend carried the call out; only the reply was lost.
    LostReply,
    /// `write_objects` wrote only the first `written` objects.
    Torn {
        /// How many objects (from the front of the call's list) were written.
        written: usize,
    },
}

/// The source of every injected [`Error::Unavailable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectedFault {
    /// The operation that failed.
    pub operation: Operation,
    /// What the backend saw of it.
    pub kind: FaultKind,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Refused => write!(f, "injected failure of {}", self.operation),
            FaultKind::LostReply => {
                write!(
                    f,
                    "injected lost reply of {} (it took effect)",
                    self.operation
                )
            }
            FaultKind::Torn { written } => write!(
                f,
                "injected torn {}: only the first {written} objects were written",
                self.operation
            ),
        }
    }
}

impl std::error::Error for InjectedFault {}

/// The injected fault behind `error`, if it is one.
pub fn injected_fault(error: &Error) -> Option<InjectedFault> {
    match error {
        Error::Unavailable { source, .. } => source.downcast_ref::<InjectedFault>().copied(),
        _ => None,
    }
}

/// Whether `error` was injected by a [`FaultHandle`].
pub fn is_injected(error: &Error) -> bool {
    injected_fault(error).is_some()
}

fn injected(operation: Operation, kind: FaultKind) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        source: Box::new(InjectedFault { operation, kind }),
    }
}

/// The faults planned for one operation, and what happened so far.
#[derive(Clone, Debug, Default)]
struct OperationPlan {
    /// Refuse every call until healed.
    always: bool,
    /// Refuse this many more calls.
    refuse: u64,
    /// Carry out, then report failure, for this many more calls.
    lose_replies: u64,
    /// Sleep this long before each call.
    delay: Duration,
    /// Calls starting now wait before reaching the backend until released.
    hold_calls: bool,
    /// Calls starting now reach the backend, then their replies wait until released.
    hold_replies: bool,
    /// Bumped by each release: a held call waits for it to move past the value it started with.
    generation: u64,
    /// Calls seen (including failed ones).
    calls: u64,
    /// Calls that got an injected failure.
    injected: u64,
}

#[derive(Debug, Default)]
struct Plan {
    operations: [OperationPlan; Operation::ALL.len()],
    /// Pending torn writes: each entry tears one `write_objects` call after that many objects.
    tears: VecDeque<usize>,
}

/// What one call should do, decided when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Pass,
    Refuse,
    LoseReply,
    Tear(usize),
}

/// A cloneable handle that plans faults for the wrappers built with it. All clones share one plan.
///
/// Precedence when several faults apply to a call: refusals (`fail_always`, then `fail_next`),
/// then a torn write (`write_objects` only), then a lost reply. Delays apply to every call,
/// failed or not, before it is decided.
#[derive(Clone, Debug)]
pub struct FaultHandle {
    plan: Arc<Mutex<Plan>>,
    /// Ticks on every release, waking held calls to look at their operation's generation.
    released: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for FaultHandle {
    fn default() -> Self {
        FaultHandle {
            plan: Arc::default(),
            released: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

/// What a call does, decided when it starts.
struct Start {
    action: Action,
    /// Hold the reply until this generation of the operation is released.
    hold_reply: Option<u64>,
}

impl FaultHandle {
    /// A handle with no faults planned.
    pub fn new() -> Self {
        Self::default()
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        // Every update below is a handful of field stores; a panic cannot leave the plan half-set.
        self.plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses the next `n` calls of `operation` (added to any already planned).
    pub fn fail_next(&self, operation: Operation, n: u64) {
        let mut plan = self.plan();
        let op = &mut plan.operations[operation.slot()];
        op.refuse = op.refuse.saturating_add(n);
    }

    /// Refuses every call of `operation` until [`FaultHandle::heal`] or [`FaultHandle::heal_all`].
    pub fn fail_always(&self, operation: Operation) {
        self.plan().operations[operation.slot()].always = true;
    }

    /// Lets the next `n` calls of `operation` take effect in the backend, then reports each as failed.
    pub fn lose_next_replies(&self, operation: Operation, n: u64) {
        let mut plan = self.plan();
        let op = &mut plan.operations[operation.slot()];
        op.lose_replies = op.lose_replies.saturating_add(n);
    }

    /// Tears the next `write_objects` call that is not refused: only its first `written` objects
    /// reach the backend, then the call fails. Several calls queue several tears.
    pub fn tear_next_write(&self, written: usize) {
        self.plan().tears.push_back(written);
    }

    /// Sleeps `delay` before every call of `operation` (zero removes the delay).
    pub fn set_delay(&self, operation: Operation, delay: Duration) {
        self.plan().operations[operation.slot()].delay = delay;
    }

    /// Holds every call of `operation` that starts from now on before it reaches the backend,
    /// until [`FaultHandle::release`]. [`FaultHandle::calls`] counts held calls, so a test can
    /// wait for one to arrive.
    pub fn hold_calls(&self, operation: Operation) {
        self.plan().operations[operation.slot()].hold_calls = true;
    }

    /// Lets every call of `operation` that starts from now on take effect in the backend, then
    /// holds its reply until [`FaultHandle::release`]: the store has changed, the caller does not
    /// know yet.
    pub fn hold_replies(&self, operation: Operation) {
        self.plan().operations[operation.slot()].hold_replies = true;
    }

    /// Lets the held calls and replies of `operation` go on; calls starting later are not held.
    pub fn release(&self, operation: Operation) {
        {
            let mut plan = self.plan();
            let op = &mut plan.operations[operation.slot()];
            op.hold_calls = false;
            op.hold_replies = false;
            op.generation = op.generation.wrapping_add(1);
        }
        self.released
            .send_modify(|tick| *tick = tick.wrapping_add(1));
    }

    /// Waits until the holds of `operation` at `generation` are released.
    async fn held(&self, operation: Operation, generation: u64) {
        let mut ticks = self.released.subscribe();
        while self.plan().operations[operation.slot()].generation == generation {
            if ticks.changed().await.is_err() {
                return;
            }
        }
    }

    /// Removes every fault planned for `operation` (refusals, lost replies, delay, holds, and for
    /// `write_objects` pending tears), releasing held calls. Counters are kept.
    pub fn heal(&self, operation: Operation) {
        {
            let mut plan = self.plan();
            let op = &mut plan.operations[operation.slot()];
            op.always = false;
            op.refuse = 0;
            op.lose_replies = 0;
            op.delay = Duration::ZERO;
            if operation == Operation::WriteObjects {
                plan.tears.clear();
            }
        }
        self.release(operation);
    }

    /// Removes every planned fault of every operation. Counters are kept.
    pub fn heal_all(&self) {
        for operation in Operation::ALL {
            self.heal(operation);
        }
    }

    /// How many calls of `operation` the wrappers have seen, failed ones included.
    pub fn calls(&self, operation: Operation) -> u64 {
        self.plan().operations[operation.slot()].calls
    }

    /// How many calls of `operation` got an injected failure.
    pub fn injected(&self, operation: Operation) -> u64 {
        self.plan().operations[operation.slot()].injected
    }

    /// Whether any fault is still planned (a refusal, lost reply or tear not yet used, or
    /// `fail_always`). Delays do not count.
    pub fn is_armed(&self) -> bool {
        let plan = self.plan();
        !plan.tears.is_empty()
            || plan
                .operations
                .iter()
                .any(|op| op.always || op.refuse > 0 || op.lose_replies > 0)
    }

    /// Counts the call, waits out any hold and delay, and decides what the call does.
    /// Decides a synchronous call: counted, and refused if a refusal is planned.
    fn refusal_now(&self, operation: Operation) -> Option<Error> {
        let mut plan = self.plan();
        let op = &mut plan.operations[operation.slot()];
        op.calls = op.calls.saturating_add(1);
        let refuse = op.always || op.refuse > 0;
        if !refuse {
            return None;
        }
        op.refuse = op.refuse.saturating_sub(1);
        op.injected = op.injected.saturating_add(1);
        Some(injected(operation, FaultKind::Refused))
    }

    async fn begin(&self, operation: Operation) -> Start {
        let (delay, hold_call, hold_reply, generation) = {
            let mut plan = self.plan();
            let op = &mut plan.operations[operation.slot()];
            op.calls = op.calls.saturating_add(1);
            (op.delay, op.hold_calls, op.hold_replies, op.generation)
        };
        if hold_call {
            self.held(operation, generation).await;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut plan = self.plan();
        let action = {
            let op = &mut plan.operations[operation.slot()];
            if op.always {
                Action::Refuse
            } else if op.refuse > 0 {
                op.refuse -= 1;
                Action::Refuse
            } else {
                Action::Pass
            }
        };
        let action = match action {
            Action::Pass if operation == Operation::WriteObjects => {
                plan.tears.pop_front().map_or(Action::Pass, Action::Tear)
            }
            other => other,
        };
        let op = &mut plan.operations[operation.slot()];
        let action = match action {
            Action::Pass if op.lose_replies > 0 => {
                op.lose_replies -= 1;
                Action::LoseReply
            }
            other => other,
        };
        if action != Action::Pass {
            op.injected = op.injected.saturating_add(1);
        }
        Start {
            action,
            hold_reply: hold_reply.then_some(generation),
        }
    }

    /// Holds a reply as the call's start decided.
    async fn reply<T>(&self, operation: Operation, start: &Start, reply: T) -> T {
        if let Some(generation) = start.hold_reply {
            self.held(operation, generation).await;
        }
        reply
    }

    /// Runs `call` as `action` says: refused before it, passed through, or run then failed.
    async fn run<T, F>(&self, operation: Operation, call: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let start = self.begin(operation).await;
        let reply = match start.action {
            Action::Refuse => return Err(injected(operation, FaultKind::Refused)),
            // Tears apply to write_objects only, which handles them itself.
            Action::Pass | Action::Tear(_) => call.await,
            Action::LoseReply => call
                .await
                .and_then(|_| Err(injected(operation, FaultKind::LostReply))),
        };
        self.reply(operation, &start, reply).await
    }
}

/// A [`Storage`] that injects the faults its [`FaultHandle`] plans, and otherwise forwards to `S`.
#[derive(Debug)]
pub struct FaultyStorage<S: Storage + ?Sized> {
    inner: Arc<S>,
    handle: FaultHandle,
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner` with a new handle.
    pub fn new(inner: S) -> Self {
        Self::from_arc(Arc::new(inner), FaultHandle::new())
    }
}

impl<S: Storage + ?Sized> FaultyStorage<S> {
    /// Wraps a shared backend with `handle` (share one handle between storage and coordinator to
    /// plan faults for both in one place).
    pub fn from_arc(inner: Arc<S>, handle: FaultHandle) -> Self {
        FaultyStorage { inner, handle }
    }

    /// The handle that plans this wrapper's faults.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// The wrapped backend, for reads that must bypass the faults.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }
}

#[async_trait]
impl<S: Storage + ?Sized> Storage for FaultyStorage<S> {
    async fn write_objects(&self, mut objects: Vec<Object>) -> Result<()> {
        let operation = Operation::WriteObjects;
        let start = self.handle.begin(operation).await;
        let reply = match start.action {
            Action::Refuse => return Err(injected(operation, FaultKind::Refused)),
            Action::Pass => self.inner.write_objects(objects).await,
            Action::LoseReply => self
                .inner
                .write_objects(objects)
                .await
                .and_then(|()| Err(injected(operation, FaultKind::LostReply))),
            Action::Tear(written) => {
                let written = written.min(objects.len());
                objects.truncate(written);
                let torn = if objects.is_empty() {
                    Ok(())
                } else {
                    self.inner.write_objects(objects).await
                };
                torn.and_then(|()| Err(injected(operation, FaultKind::Torn { written })))
            }
        };
        self.handle.reply(operation, &start, reply).await
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        self.handle
            .run(Operation::Read, self.inner.read(path))
            .await
    }

    async fn read_checkpoint(&self) -> Result<Option<Versioned>> {
        self.handle
            .run(Operation::ReadCheckpoint, self.inner.read_checkpoint())
            .await
    }

    async fn write_checkpoint(
        &self,
        data: Bytes,
        expected: Option<&ObjectVersion>,
    ) -> Result<ObjectVersion> {
        self.handle
            .run(
                Operation::WriteCheckpoint,
                self.inner.write_checkpoint(data, expected),
            )
            .await
    }

    async fn delete_partials(&self, paths: Vec<String>) -> Result<()> {
        self.handle
            .run(Operation::DeletePartials, self.inner.delete_partials(paths))
            .await
    }

    fn deletes_partials_itself(&self) -> bool {
        self.inner.deletes_partials_itself()
    }
}

/// A [`Coordinator`] that injects the faults its [`FaultHandle`] plans, and otherwise forwards to `C`.
#[derive(Debug)]
pub struct FaultyCoordinator<C: Coordinator + ?Sized> {
    inner: Arc<C>,
    handle: FaultHandle,
}

impl<C: Coordinator> FaultyCoordinator<C> {
    /// Wraps `inner` with a new handle.
    pub fn new(inner: C) -> Self {
        Self::from_arc(Arc::new(inner), FaultHandle::new())
    }
}

impl<C: Coordinator + ?Sized> FaultyCoordinator<C> {
    /// Wraps a shared backend with `handle`.
    pub fn from_arc(inner: Arc<C>, handle: FaultHandle) -> Self {
        FaultyCoordinator { inner, handle }
    }

    /// The handle that plans this wrapper's faults.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// The wrapped backend, for calls that must bypass the faults.
    pub fn inner(&self) -> &Arc<C> {
        &self.inner
    }
}

#[async_trait]
impl<C: Coordinator + ?Sized> Coordinator for FaultyCoordinator<C> {
    async fn sequence(&self, leaves: &[SequenceLeaf]) -> Result<u64> {
        self.handle
            .run(Operation::Sequence, self.inner.sequence(leaves))
            .await
    }

    async fn lookup(&self, dedup_keys: &[[u8; 32]]) -> Result<Vec<Option<u64>>> {
        self.handle
            .run(Operation::Lookup, self.inner.lookup(dedup_keys))
            .await
    }

    async fn state(&self) -> Result<SequenceState> {
        self.handle.run(Operation::State, self.inner.state()).await
    }

    async fn read_sequenced(&self, from: u64, to: u64) -> Result<Vec<Bytes>> {
        self.handle
            .run(
                Operation::ReadSequenced,
                self.inner.read_sequenced(from, to),
            )
            .await
    }

    async fn mark_integrated(&self, from: u64, to: u64) -> Result<()> {
        self.handle
            .run(
                Operation::MarkIntegrated,
                self.inner.mark_integrated(from, to),
            )
            .await
    }

    async fn freeze(&self) -> Result<u64> {
        // Not a fault point: an operator's one-off command, not part of the write path.
        self.inner.freeze().await
    }

    async fn frozen(&self) -> Result<Option<u64>> {
        self.inner.frozen().await
    }

    async fn claim_publication(&self, min_interval: std::time::Duration) -> Result<bool> {
        // Not a fault point: forwarded so the wrapped backend's rate limit still applies.
        self.inner.claim_publication(min_interval).await
    }

    fn health(&self) -> Result<()> {
        match self.handle.refusal_now(Operation::Health) {
            Some(error) => Err(error),
            None => self.inner.health(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

    use std::time::Instant;

    use super::*;
    use crate::memory::{MemoryCoordinator, MemoryStorage};

    fn object(n: u8) -> Object {
        Object::new(format!("tile/0/00{n}"), vec![n; 32])
    }

    fn leaf(n: u8) -> SequenceLeaf {
        SequenceLeaf {
            dedup_key: crate::dedup_key(&[n]),
            data: Bytes::from(vec![n]),
        }
    }

    fn fault_of<T: fmt::Debug>(result: Result<T>) -> InjectedFault {
        match result {
            Err(error) => injected_fault(&error).unwrap(),
            Ok(value) => panic!("expected an injected failure, got {value:?}"),
        }
    }

    #[tokio::test]
    async fn the_wrappers_pass_the_conformance_suite_when_no_fault_is_planned() {
        let storage = FaultyStorage::new(MemoryStorage::default());
        crate::conformance::storage_suite(&storage).await;
        let coordinator = FaultyCoordinator::new(MemoryCoordinator::default());
        crate::conformance::coordinator_suite(&coordinator).await;
        assert!(storage.handle().calls(Operation::WriteObjects) > 0);
        assert!(coordinator.handle().calls(Operation::Sequence) > 0);
        for operation in Operation::ALL {
            assert_eq!(storage.handle().injected(operation), 0, "{operation}");
        }
    }

    #[tokio::test]
    async fn fail_next_refuses_exactly_n_calls_and_changes_nothing() {
        let storage = FaultyStorage::new(MemoryStorage::default());
        let faults = storage.handle();
        faults.fail_next(Operation::WriteObjects, 2);
        assert!(faults.is_armed());
        for _ in 0..2 {
            let fault = fault_of(storage.write_objects(vec![object(1)]).await);
            assert_eq!(fault.kind, FaultKind::Refused);
            assert_eq!(fault.operation, Operation::WriteObjects);
            assert!(matches!(
                storage.inner().read("tile/0/001").await,
                Err(Error::NotFound { .. })
            ));
        }
        assert!(!faults.is_armed());
        storage.write_objects(vec![object(1)]).await.unwrap();
        assert_eq!(storage.read("tile/0/001").await.unwrap(), object(1).data);
        assert_eq!(faults.calls(Operation::WriteObjects), 3);
        assert_eq!(faults.injected(Operation::WriteObjects), 2);
        // Other operations were never affected.
        assert_eq!(faults.injected(Operation::Read), 0);
    }

    #[tokio::test]
    async fn fail_always_holds_until_healed_and_only_for_its_operation() {
        let storage = FaultyStorage::new(MemoryStorage::default());
        let faults = storage.handle();
        faults.fail_always(Operation::WriteCheckpoint);
        for _ in 0..5 {
            let fault = fault_of(
                storage
                    .write_checkpoint(Bytes::from_static(b"cp"), None)
                    .await,
            );
            assert_eq!(fault.operation, Operation::WriteCheckpoint);
        }
        assert!(storage.read_checkpoint().await.unwrap().is_none());
        storage.write_objects(vec![object(2)]).await.unwrap();
        faults.heal(Operation::WriteCheckpoint);
        assert!(!faults.is_armed());
        let version = storage
            .write_checkpoint(Bytes::from_static(b"cp"), None)
            .await
            .unwrap();
        assert_eq!(
            storage.read_checkpoint().await.unwrap().unwrap().version,
            version
        );
        assert_eq!(faults.injected(Operation::WriteCheckpoint), 5);
    }

    #[tokio::test]
    async fn a_lost_reply_takes_effect_but_reports_failure() {
        let storage = FaultyStorage::new(MemoryStorage::default());
        let faults = storage.handle();
        faults.lose_next_replies(Operation::WriteCheckpoint, 1);
        let fault = fault_of(
            storage
                .write_checkpoint(Bytes::from_static(b"cp"), None)
                .await,
        );
        assert_eq!(fault.kind, FaultKind::LostReply);
        let stored = storage.read_checkpoint().await.unwrap().unwrap();
        assert_eq!(stored.data, Bytes::from_static(b"cp"));
        // The caller's idea of the version is now stale.
        assert!(matches!(
            storage
                .write_checkpoint(Bytes::from_static(b"cp2"), None)
                .await,
            Err(Error::Precondition { .. })
        ));

        let coordinator = FaultyCoordinator::new(MemoryCoordinator::default());
        let faults = coordinator.handle();
        faults.lose_next_replies(Operation::Sequence, 1);
        let fault = fault_of(coordinator.sequence(&[leaf(1), leaf(2)]).await);
        assert_eq!(fault.kind, FaultKind::LostReply);
        assert_eq!(coordinator.state().await.unwrap().sequenced, 2);
        assert_eq!(coordinator.sequence(&[leaf(3)]).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_torn_write_stores_only_the_first_objects() {
        let storage = FaultyStorage::new(MemoryStorage::default());
        let faults = storage.handle();
        faults.tear_next_write(2);
        faults.tear_next_write(0);
        let objects = vec![object(1), object(2), object(3)];
        let fault = fault_of(storage.write_objects(objects.clone()).await);
        assert_eq!(fault.kind, FaultKind::Torn { written: 2 });
        assert!(storage.read("tile/0/001").await.is_ok());
        assert!(storage.read("tile/0/002").await.is_ok());
        assert!(matches!(
            storage.read("tile/0/003").await,
            Err(Error::NotFound { .. })
        ));
        // The second tear writes nothing.
        let fault = fault_of(storage.write_objects(vec![object(4)]).await);
        assert_eq!(fault.kind, FaultKind::Torn { written: 0 });
        assert!(storage.read("tile/0/004").await.is_err());
        // Retrying the whole call completes it (identical objects are idempotent).
        storage.write_objects(objects).await.unwrap();
        assert!(storage.read("tile/0/003").await.is_ok());
        assert_eq!(faults.injected(Operation::WriteObjects), 2);
    }

    #[tokio::test]
    async fn a_tear_larger_than_the_call_writes_everything_and_still_fails() {
        let storage = FaultyStorage::new(MemoryStorage::default());
        storage.handle().tear_next_write(10);
        let fault = fault_of(storage.write_objects(vec![object(1)]).await);
        assert_eq!(fault.kind, FaultKind::Torn { written: 1 });
        assert!(storage.read("tile/0/001").await.is_ok());
    }

    #[tokio::test]
    async fn refusals_come_before_tears_and_lost_replies() {
        let storage = FaultyStorage::new(MemoryStorage::default());
        let faults = storage.handle();
        faults.tear_next_write(1);
        faults.lose_next_replies(Operation::WriteObjects, 1);
        faults.fail_next(Operation::WriteObjects, 1);
        let order: Vec<FaultKind> = [
            storage.write_objects(vec![object(1), object(2)]).await,
            storage.write_objects(vec![object(1), object(2)]).await,
            storage.write_objects(vec![object(3)]).await,
        ]
        .into_iter()
        .map(|r| fault_of(r).kind)
        .collect();
        assert_eq!(
            order,
            [
                FaultKind::Refused,
                FaultKind::Torn { written: 1 },
                FaultKind::LostReply
            ]
        );
        assert!(storage.read("tile/0/003").await.is_ok());
        assert!(!faults.is_armed());
    }

    #[tokio::test]
    async fn one_handle_can_drive_both_wrappers() {
        let handle = FaultHandle::new();
        let storage = FaultyStorage::from_arc(Arc::new(MemoryStorage::default()), handle.clone());
        let coordinator =
            FaultyCoordinator::from_arc(Arc::new(MemoryCoordinator::default()), handle.clone());
        handle.fail_always(Operation::Sequence);
        handle.fail_always(Operation::Read);
        assert_eq!(
            fault_of(coordinator.sequence(&[leaf(1)]).await).operation,
            Operation::Sequence
        );
        assert_eq!(
            fault_of(storage.read("tile/0/000").await).operation,
            Operation::Read
        );
        assert_eq!(coordinator.inner().state().await.unwrap().sequenced, 0);
        // Operations without a plan pass.
        assert_eq!(
            coordinator.lookup(&[leaf(1).dedup_key]).await.unwrap(),
            vec![None]
        );
        handle.heal_all();
        assert_eq!(coordinator.sequence(&[leaf(1)]).await.unwrap(), 0);
        assert!(matches!(
            storage.read("tile/0/000").await,
            Err(Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn each_coordinator_operation_can_be_refused() {
        let coordinator = FaultyCoordinator::new(MemoryCoordinator::default());
        coordinator.sequence(&[leaf(1)]).await.unwrap();
        let faults = coordinator.handle();
        for operation in [
            Operation::Sequence,
            Operation::Lookup,
            Operation::State,
            Operation::ReadSequenced,
            Operation::MarkIntegrated,
            Operation::Health,
        ] {
            faults.fail_next(operation, 1);
        }
        assert!(fault_of(coordinator.health()).operation == Operation::Health);
        coordinator.health().unwrap();
        assert!(fault_of(coordinator.sequence(&[leaf(2)]).await).operation == Operation::Sequence);
        assert!(
            fault_of(coordinator.lookup(&[leaf(1).dedup_key]).await).operation == Operation::Lookup
        );
        assert!(fault_of(coordinator.state().await).operation == Operation::State);
        assert!(
            fault_of(coordinator.read_sequenced(0, 1).await).operation == Operation::ReadSequenced
        );
        assert!(
            fault_of(coordinator.mark_integrated(0, 1).await).operation
                == Operation::MarkIntegrated
        );
        // Nothing changed, and every call now passes.
        assert_eq!(
            coordinator.state().await.unwrap(),
            SequenceState {
                integrated: 0,
                sequenced: 1
            }
        );
        coordinator.mark_integrated(0, 1).await.unwrap();
        assert_eq!(
            coordinator.lookup(&[leaf(1).dedup_key]).await.unwrap(),
            vec![Some(0)]
        );
    }

    #[tokio::test]
    async fn a_delay_is_applied_before_the_call() {
        let storage = FaultyStorage::new(MemoryStorage::default());
        let faults = storage.handle();
        faults.set_delay(Operation::Read, Duration::from_millis(40));
        let started = Instant::now();
        assert!(storage.read("tile/0/000").await.is_err());
        assert!(started.elapsed() >= Duration::from_millis(40));
        // Delays are not faults.
        assert!(!faults.is_armed());
        assert_eq!(faults.injected(Operation::Read), 0);
        faults.heal(Operation::Read);
        let started = Instant::now();
        assert!(storage.read("tile/0/000").await.is_err());
        assert!(started.elapsed() < Duration::from_millis(40));
    }

    #[test]
    fn injected_errors_are_transient_and_recognisable() {
        let error = injected(Operation::Read, FaultKind::Refused);
        assert!(error.is_transient());
        assert!(is_injected(&error));
        assert!(!is_injected(&Error::NotFound { path: "x".into() }));
        assert!(!is_injected(&Error::Unavailable {
            backend: "memory",
            source: "real".into()
        }));
        assert_eq!(
            InjectedFault {
                operation: Operation::WriteObjects,
                kind: FaultKind::Torn { written: 3 }
            }
            .to_string(),
            "injected torn write_objects: only the first 3 objects were written"
        );
        let slots: std::collections::HashSet<usize> =
            Operation::ALL.iter().map(|o| o.slot()).collect();
        assert_eq!(slots.len(), Operation::ALL.len());
    }

    /// Polls until `ready` holds; panics after a few seconds.
    async fn eventually<F: Future<Output = bool>>(mut ready: impl FnMut() -> F) {
        for _ in 0..500 {
            if ready().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in 5 s");
    }

    #[tokio::test]
    async fn a_held_call_reaches_the_backend_only_when_released() {
        let coordinator = Arc::new(FaultyCoordinator::new(MemoryCoordinator::default()));
        let faults = coordinator.handle();
        faults.hold_calls(Operation::Sequence);
        let call = tokio::spawn({
            let coordinator = Arc::clone(&coordinator);
            async move { coordinator.sequence(&[leaf(1)]).await }
        });
        eventually(|| async { faults.calls(Operation::Sequence) == 1 }).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(coordinator.inner().state().await.unwrap().sequenced, 0);
        assert!(!call.is_finished());
        faults.release(Operation::Sequence);
        assert_eq!(call.await.unwrap().unwrap(), 0);
        assert_eq!(coordinator.inner().state().await.unwrap().sequenced, 1);
        // Calls after the release are not held.
        assert_eq!(coordinator.sequence(&[leaf(2)]).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_held_reply_comes_after_the_call_took_effect() {
        let storage = Arc::new(FaultyStorage::new(MemoryStorage::default()));
        let faults = storage.handle();
        faults.hold_replies(Operation::WriteObjects);
        let call = tokio::spawn({
            let storage = Arc::clone(&storage);
            async move { storage.write_objects(vec![object(3)]).await }
        });
        let inner = Arc::clone(storage.inner());
        eventually(|| async { faults.calls(Operation::WriteObjects) == 1 }).await;
        eventually(|| async { inner.read("tile/0/003").await.is_ok() }).await;
        assert_eq!(inner.read("tile/0/003").await.unwrap(), object(3).data);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!call.is_finished());
        faults.heal(Operation::WriteObjects);
        call.await.unwrap().unwrap();
    }
}
