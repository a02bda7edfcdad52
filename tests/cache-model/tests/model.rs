// SPDX-License-Identifier: GPL-2.0

//! The cache model against the real rules: safe, minimal, and able to catch
//! a broken rule. (`cache-model` runs the full-size campaigns.)

use cache_model::{
    campaign,
    ownership::{Direction::*, Policy},
    run::{self, Mutation},
    script::{Scenario, Step::*, Usage},
};

const SEED: u64 = 0x7e57;

#[test]
fn tracked_is_safe_and_equal_to_the_oracle_on_random_sequences() {
    let s = campaign::random(SEED, 3_000, 60, Policy::Tracked, Usage::ANY, Mutation::None);
    assert!(s.safe(), "{:?}", s.first_failure);
    assert_eq!(s.differs_from_oracle, 0, "{:?}", s.first_failure);
    assert!(s.cost.total() > 0 && s.ground_truth.total() <= s.cost.total());
}

#[test]
fn tracked_is_safe_and_equal_to_the_oracle_on_every_short_sequence() {
    let s = campaign::exhaustive(3, 1, Policy::Tracked, Usage::ANY, Mutation::None);
    assert!(s.sequences > 5_000, "{}", s.sequences);
    assert!(s.safe(), "{:?}", s.first_failure);
    assert_eq!(s.differs_from_oracle, 0, "{:?}", s.first_failure);
}

#[test]
fn always_is_safe_under_strict_usage_and_costs_more() {
    let always = campaign::random(
        SEED,
        3_000,
        60,
        Policy::Always,
        Usage::STRICT,
        Mutation::None,
    );
    let tracked = campaign::random(
        SEED,
        3_000,
        60,
        Policy::Tracked,
        Usage::STRICT,
        Mutation::None,
    );
    assert!(always.safe(), "{:?}", always.first_failure);
    assert!(always.cost.total() > tracked.cost.total());
}

#[test]
fn dropping_the_invalidate_after_a_device_write_is_caught() {
    let s = campaign::random(
        SEED,
        500,
        60,
        Policy::Tracked,
        Usage::ANY,
        Mutation::DropInvalidates,
    );
    assert!(s.stale_reads > 0, "the model missed a skipped invalidate");
}

#[test]
fn dropping_the_clean_before_device_access_is_caught() {
    let s = campaign::random(
        SEED,
        500,
        60,
        Policy::Tracked,
        Usage::ANY,
        Mutation::DropCleans,
    );
    assert!(
        s.stale_reads > 0 && s.lost_writes > 0,
        "the model missed a skipped clean"
    );
}

#[test]
fn ignoring_fence_signals_is_caught() {
    let s = campaign::random(
        SEED,
        500,
        60,
        Policy::Tracked,
        Usage::ANY,
        Mutation::IgnoreFences,
    );
    assert!(s.stale_reads > 0, "the model missed an ignored fence");
}

#[test]
fn fences_are_safe_and_minimal_on_every_short_sequence() {
    // The exhaustive campaign includes a fenced device next to an unfenced one.
    let s = campaign::exhaustive(3, 0, Policy::Tracked, Usage::ANY, Mutation::None);
    assert!(s.safe(), "{:?}", s.first_failure);
    assert_eq!(s.differs_from_oracle, 0, "{:?}", s.first_failure);
}

/// The upstream system heap does not invalidate for a write-only CPU access
/// (`dma_sync_*_for_cpu(DMA_TO_DEVICE)` is a no-op on arm64). A partial-line
/// CPU write after a device write then writes stale neighbours back over the
/// device's data. Tracked invalidates first.
#[test]
fn write_only_cpu_access_after_a_device_write_loses_data_with_always_only() {
    let scenario = Scenario {
        coherent: vec![false],
        fenced: vec![false],
        steps: vec![
            Map(0, Bidirectional), // long-lived GPU mapping
            Fill(0),               // the CPU speculatively caches line 0
            DeviceWrite(0, 1),     // the GPU writes word 1 (line 0)
            BeginCpu(ToDevice),    // DMA_BUF_SYNC_START | WRITE
            CpuWrite(0),           // the CPU writes word 0 (line 0)
            EndCpu(ToDevice),      // the clean writes a stale word 1 back
            Unmap(0),
            BeginCpu(FromDevice),
            CpuRead(1),
            EndCpu(FromDevice),
        ],
    };
    let always = run::run(&scenario, Policy::Always, Mutation::None);
    assert!(!always.violations.is_empty());
    let tracked = run::run(&scenario, Policy::Tracked, Mutation::None);
    assert!(tracked.violations.is_empty(), "{:?}", tracked.violations);
}
