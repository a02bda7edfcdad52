// SPDX-License-Identifier: GPL-2.0

//! The behaviours the ownership rules promise, one test each, on the real
//! `ownership.rs`.

use cache_model::ownership::{
    CacheOps, Device, Direction::*, Event, Event::*, Ownership, Policy, Skip,
};

const NONCOHERENT: Device = Device {
    coherent: false,
    fenced: false,
};
const COHERENT: Device = Device {
    coherent: true,
    fenced: false,
};
const FENCED: Device = Device {
    coherent: false,
    fenced: true,
};

fn ops(clean: u32, invalidate: u32) -> CacheOps {
    CacheOps { clean, invalidate }
}

/// Feeds `events`, returns the total maintenance.
fn total(own: &mut Ownership, events: &[Event]) -> CacheOps {
    events.iter().fold(CacheOps::NONE, |acc, &e| {
        let d = own.on(e).ops;
        ops(acc.clean + d.clean, acc.invalidate + d.invalidate)
    })
}

fn tracked() -> Ownership {
    Ownership::new(Policy::Tracked)
}

/// A buffer that has been cleaned once already (the zeroes are out).
fn settled() -> Ownership {
    let mut own = tracked();
    total(
        &mut own,
        &[Map(NONCOHERENT, ToDevice), Unmap(NONCOHERENT, ToDevice)],
    );
    own
}

#[test]
fn zeroed_pages_are_cleaned_before_the_first_noncoherent_access() {
    let mut own = tracked();
    assert_eq!(own.on(Map(NONCOHERENT, FromDevice)).ops, ops(1, 0));
}

#[test]
fn three_mapped_noncoherent_devices_cost_one_op_per_transition_not_three() {
    let mut own = settled();
    let three = [
        Map(NONCOHERENT, Bidirectional),
        Map(NONCOHERENT, Bidirectional),
        Map(NONCOHERENT, Bidirectional),
    ];
    assert_eq!(total(&mut own, &three), ops(0, 0));
    assert_eq!(own.on(BeginCpu(Bidirectional)).ops, ops(0, 1));
    assert_eq!(own.on(EndCpu(Bidirectional)).ops, ops(1, 0));

    let mut always = Ownership::new(Policy::Always);
    total(&mut always, &three);
    assert_eq!(always.on(BeginCpu(Bidirectional)).ops, ops(0, 3));
    assert_eq!(always.on(EndCpu(Bidirectional)).ops, ops(3, 0));
}

#[test]
fn handover_between_devices_without_cpu_access_costs_nothing() {
    let mut own = settled();
    let pipeline = [
        Map(NONCOHERENT, FromDevice), // camera writes
        Unmap(NONCOHERENT, FromDevice),
        Map(NONCOHERENT, Bidirectional), // GPU reads and writes
        Unmap(NONCOHERENT, Bidirectional),
        Map(NONCOHERENT, ToDevice), // display reads
        Unmap(NONCOHERENT, ToDevice),
    ];
    for _ in 0..10 {
        assert_eq!(total(&mut own, &pipeline), ops(0, 0));
    }
}

#[test]
fn coherent_devices_never_cause_cache_ops() {
    let mut own = tracked();
    let events = [
        Map(COHERENT, FromDevice),
        BeginCpu(Bidirectional),
        EndCpu(Bidirectional),
        Unmap(COHERENT, FromDevice),
        BeginCpu(FromDevice),
        EndCpu(FromDevice),
        Map(COHERENT, Bidirectional),
        BeginCpu(ToDevice),
        EndCpu(ToDevice),
        Unmap(COHERENT, Bidirectional),
    ];
    for &e in &events {
        let d = own.on(e);
        assert_eq!(d.ops, CacheOps::NONE, "{e:?}");
    }
    assert_eq!(
        own.on(Map(COHERENT, ToDevice)).skipped,
        Some(Skip::Coherent)
    );
}

#[test]
fn repeated_cpu_access_on_a_cpu_owned_buffer_costs_nothing() {
    let mut own = tracked();
    for _ in 0..100 {
        assert_eq!(
            total(&mut own, &[BeginCpu(Bidirectional), EndCpu(Bidirectional)]),
            CacheOps::NONE
        );
    }
}

#[test]
fn long_lived_reader_sees_each_cpu_frame_after_one_clean() {
    let mut own = settled();
    own.on(Map(NONCOHERENT, ToDevice)); // display, mapped once
    own.on(Map(NONCOHERENT, ToDevice)); // a second display
    for _ in 0..5 {
        assert_eq!(own.on(BeginCpu(ToDevice)).ops, CacheOps::NONE);
        assert_eq!(own.on(EndCpu(ToDevice)).ops, ops(1, 0));
    }
}

#[test]
fn long_lived_writer_is_invalidated_once_per_cpu_access() {
    let mut own = settled();
    own.on(Map(NONCOHERENT, Bidirectional)); // GPU, mapped once
    own.on(Map(NONCOHERENT, FromDevice)); // camera, mapped once
    for _ in 0..5 {
        assert_eq!(own.on(BeginCpu(FromDevice)).ops, ops(0, 1));
        assert_eq!(own.on(EndCpu(FromDevice)).ops, CacheOps::NONE);
    }
}

#[test]
fn fenced_writer_costs_an_invalidate_only_after_it_wrote() {
    let mut own = settled();
    own.on(Map(FENCED, FromDevice));
    assert_eq!(
        total(&mut own, &[BeginCpu(FromDevice), EndCpu(FromDevice)]),
        CacheOps::NONE
    );
    own.on(DeviceWrote(FENCED));
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, ops(0, 1));
    own.on(EndCpu(FromDevice));
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, CacheOps::NONE);
}

#[test]
fn fenced_writer_unmap_costs_nothing_without_a_reported_write() {
    let mut own = settled();
    own.on(Map(FENCED, Bidirectional));
    own.on(Unmap(FENCED, Bidirectional));
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, CacheOps::NONE);
}

#[test]
fn device_write_is_invalidated_at_the_next_cpu_access_not_at_unmap() {
    let mut own = settled();
    own.on(Map(NONCOHERENT, FromDevice));
    let unmap = own.on(Unmap(NONCOHERENT, FromDevice));
    assert_eq!(
        (unmap.ops, unmap.skipped),
        (CacheOps::NONE, Some(Skip::DeferredToCpuAccess))
    );
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, ops(0, 1));
    own.on(EndCpu(FromDevice));
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, CacheOps::NONE);
}

#[test]
fn cpu_write_after_device_write_is_invalidated_first() {
    // Partial-line writes would otherwise write stale neighbours back.
    let mut own = settled();
    own.on(Map(NONCOHERENT, FromDevice));
    own.on(Unmap(NONCOHERENT, FromDevice));
    assert_eq!(own.on(BeginCpu(ToDevice)).ops, ops(0, 1));
}

#[test]
fn end_without_start_still_cleans_for_a_mapped_device() {
    let mut own = settled();
    own.on(Map(NONCOHERENT, ToDevice));
    assert_eq!(own.on(EndCpu(ToDevice)).ops, ops(1, 0));
    assert_eq!(own.cpu_depth(), 0);
}

#[test]
fn direction_mismatch_counts_as_a_write() {
    let mut own = settled();
    own.on(Map(NONCOHERENT, ToDevice));
    own.on(BeginCpu(FromDevice)); // declared a read ...
    assert_eq!(own.on(EndCpu(ToDevice)).ops, ops(1, 0)); // ... ended as a write
}

#[test]
fn nested_start_that_must_invalidate_cleans_first() {
    let mut own = settled();
    own.on(BeginCpu(FromDevice));
    own.on(Map(NONCOHERENT, FromDevice));
    own.on(Unmap(NONCOHERENT, FromDevice));
    // The open bracket may still end as a write: never drop its lines.
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, ops(1, 1));
}

#[test]
fn clean_does_not_outlast_an_open_write_bracket() {
    let mut own = settled();
    own.on(BeginCpu(ToDevice));
    assert_eq!(own.on(Map(NONCOHERENT, ToDevice)).ops, ops(1, 0));
    // The CPU kept writing after the map: its end cleans again.
    assert_eq!(own.on(EndCpu(ToDevice)).ops, ops(1, 0));
}

#[test]
fn detach_while_mapped_is_handled_as_unmap() {
    // The exporter turns a detach of a mapped attachment into an unmap.
    let mut own = settled();
    own.on(Map(NONCOHERENT, Bidirectional));
    own.on(Unmap(NONCOHERENT, Bidirectional));
    assert_eq!(own.mapped(), 0);
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, ops(0, 1));
}

#[test]
fn unbalanced_unmap_does_not_underflow() {
    let mut own = settled();
    own.on(Unmap(NONCOHERENT, FromDevice));
    own.on(EndCpu(FromDevice));
    assert_eq!((own.mapped(), own.cpu_depth()), (0, 0));
    // The stray unmap of a writer was still taken as a possible write.
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, ops(0, 1));
}
