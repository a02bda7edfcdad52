// SPDX-License-Identifier: GPL-2.0

//! What the CPU cache may hold for one buffer, and the maintenance that
//! keeps it right: the ownership rules (`ownership.rs`) with the buffer's
//! mapping to the heap's maintenance device, under one IRQ-safe spinlock.
//!
//! The buffer and the callbacks of the fences it watches share it. A fence
//! may signal in hard IRQ, and its callback applies the signal there and
//! then (`DeviceWrote`), so that a coherent importer's snoops and reads
//! through the user's existing entries see the device's data as soon as
//! the fence has signalled, as the rules (and the cache model, which feeds
//! the event at the step where it happens) assume. A fence's callbacks run
//! in the order they were added, under its lock, and ours is added when
//! the access is committed: every consumer that learns of the signal from
//! a callback added later runs after the invalidate; one that only tests
//! the signalled bit meanwhile, on another CPU, can overtake it by the
//! callbacks' duration. Cache maintenance
//! through a mapping that does not bounce is allowed in atomic context;
//! the rules never ask a signal to revoke user entries, which would sleep.
//!
//! Lock order: the buffer's lock, then this one; a fence's lock (held
//! while its callbacks run), then this one. Nothing is called under this
//! lock that takes either.

use crate::{
    cache_ops::MaintainedTable,
    context::HeapContext,
    fence_hooks::Signalled,
    irq_spinlock::{new_irq_spinlock, IrqSpinLock},
    ownership::{Decision, Device, Event, Ownership, Policy, UserAccess},
    stats::CacheStats,
};
use kernel::{prelude::*, sync::Arc};

/// A device whose write a fence reported. Its coherence is unknown to the
/// fence, so it is taken as non-coherent: at worst one invalidate too many.
pub(crate) const FENCED_WRITER: Device = Device {
    coherent: false,
    fenced: true,
};

/// The rules' state, the counters, and the maintenance mapping.
struct State {
    ownership: Ownership,
    stats: CacheStats,
    /// Made when maintenance may first be needed (see
    /// `HeapBuffer::need_maintenance`): allocation stays free of it.
    maintenance: Option<MaintainedTable>,
}

/// A buffer's cache state, shared with its fence callbacks.
#[pin_data]
pub(crate) struct Coherence {
    #[pin]
    state: IrqSpinLock<State>,
    /// For the heap-wide counters (and the maintenance device, which the
    /// mapping needs for as long as it exists).
    heap: Arc<HeapContext>,
}

impl Coherence {
    /// The state of a new buffer whose rules start as `ownership`.
    pub(crate) fn new(ownership: Ownership, heap: Arc<HeapContext>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                state <- new_irq_spinlock!(State {
                    ownership,
                    stats: CacheStats::default(),
                    maintenance: None,
                }),
                heap,
            }),
            GFP_KERNEL,
        )
    }

    /// A copy of the rules' state now.
    pub(crate) fn ownership(&self) -> Ownership {
        self.state.lock().ownership
    }

    /// The rules' state and the counters, read together.
    pub(crate) fn snapshot(&self) -> (Ownership, CacheStats) {
        let state = self.state.lock();
        (state.ownership, state.stats)
    }

    /// What `event` would decide now, without applying it.
    pub(crate) fn preview(&self, event: Event) -> Decision {
        let mut ownership = self.ownership();
        ownership.on(event)
    }

    /// Whether a decision may need a step that cannot be taken under this
    /// lock: revoking user entries (there are some) or making the
    /// maintenance mapping (there is none yet, under a policy that
    /// maintains).
    pub(crate) fn may_need_steps_outside(&self) -> bool {
        let state = self.state.lock();
        state.ownership.user_access() != UserAccess::None
            || (state.maintenance.is_none() && state.ownership.policy() != Policy::Always)
    }

    /// Whether the maintenance mapping exists.
    pub(crate) fn has_maintenance(&self) -> bool {
        self.state.lock().maintenance.is_some()
    }

    /// Keeps the maintenance mapping (made once, by the buffer, under its
    /// lock).
    pub(crate) fn set_maintenance(&self, table: MaintainedTable) {
        let mut state = self.state.lock();
        if state.maintenance.is_none() {
            state.maintenance = Some(table);
        }
    }

    /// Applies `event` to the rules, counts the decision and, unless under
    /// `always` (whose importers' mappings sync), performs its
    /// maintenance. The caller has revoked the user entries first if the
    /// decision revokes.
    pub(crate) fn apply(&self, event: Event) -> Decision {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let decision = state.ownership.on(event);
        state.stats.record(&decision, self.heap.totals());
        if state.ownership.policy() != Policy::Always && !decision.ops.is_empty() {
            match &state.maintenance {
                Some(maintenance) => maintenance.perform(&decision, state.ownership.whole()),
                // The buffer makes the mapping before any decision that
                // can maintain; without it the DMA layer could not map.
                None => pr_err!("no maintenance mapping: cache maintenance skipped\n"),
            }
        }
        decision
    }

    /// Counts a user fault (outside any bracket if `unbracketed`).
    pub(crate) fn record_user_fault(&self, unbracketed: bool) {
        self.state
            .lock()
            .stats
            .record_user_fault(unbracketed, self.heap.totals());
    }
}

impl Signalled for Coherence {
    /// A watched non-coherent writer's fence signalled: atomic context.
    fn device_wrote(&self) {
        self.apply(Event::DeviceWrote(FENCED_WRITER));
    }
}
