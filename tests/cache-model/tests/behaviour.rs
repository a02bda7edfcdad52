// SPDX-License-Identifier: GPL-2.0

//! The behaviours the ownership rules promise, one test each, on the real
//! `ownership.rs` (and, for bouncing devices, on the cache model too).

use cache_model::{
    campaign::Config,
    ownership::{
        CacheOps, Device, Direction::*, Event, Event::*, Lines, Ownership, Policy, Skip, UserAccess,
    },
    run::{self, Mutation},
    script::{Scenario, Step as S},
    sim::{Violation, BUFFER_BYTES},
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
    Ownership::new(Policy::Tracked, 1)
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

    let mut always = Ownership::new(Policy::Always, 1);
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

/// A coherent importer's snoop may be served by clean CPU lines too: after
/// a non-coherent device wrote, its map drops the lines that may be older
/// than memory, and while it is mapped a reported write does at once.
#[test]
fn coherent_importer_after_a_noncoherent_writer_drops_stale_lines() {
    let mut own = settled();
    own.on(Map(NONCOHERENT, FromDevice));
    own.on(Unmap(NONCOHERENT, FromDevice));
    assert_eq!(own.on(Map(COHERENT, ToDevice)).ops, ops(0, 1));
    own.on(Map(FENCED, FromDevice));
    assert_eq!(own.on(DeviceWrote(FENCED)).ops, ops(0, 1));
    assert_eq!(own.on(Unmap(FENCED, FromDevice)).ops, CacheOps::NONE);
    // The CPU read that follows finds nothing stale.
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, CacheOps::NONE);
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

/// Runs `steps` on the cache model under `Tracked` with `mutation`; devices
/// are non-coherent and unfenced, `bounce` says which ones bounce.
fn violations(bounce: &[bool], steps: &[S], mutation: Mutation) -> usize {
    let scenario = Scenario {
        coherent: vec![false; bounce.len()],
        fenced: vec![false; bounce.len()],
        bounce: bounce.to_vec(),
        steps: steps.to_vec(),
    };
    run::run(&scenario, Policy::Tracked, mutation)
        .violations
        .len()
}

#[test]
fn a_bouncing_camera_after_a_direct_writer_invalidates_before_the_copy() {
    // A GPU writes the buffer directly and unmaps (the invalidate waits).
    // A camera whose mapping bounces maps next: the DMA API copies the
    // buffer into its slot with the CPU, and its unmap copies the whole slot
    // back, the GPU's words included. So the copy in must not see lines
    // older than the GPU's writes.
    let mut own = settled();
    own.on(Map(NONCOHERENT, Bidirectional));
    own.on(Unmap(NONCOHERENT, Bidirectional));
    assert_eq!(own.on(BounceRead).ops, ops(0, 1)); // the camera maps
    let unmap = own.on(BounceWrote); // the camera unmaps
    assert_eq!(
        (unmap.ops, unmap.skipped),
        (CacheOps::NONE, Some(Skip::DeferredToMap))
    );
    // The CPU reads what the copy back left in its cache.
    assert_eq!(own.on(BeginCpu(FromDevice)).ops, CacheOps::NONE);

    let steps = [
        S::Map(0, Bidirectional), // the GPU, direct
        S::Fill(0),               // the CPU caches line 0
        S::DeviceWrite(0, 1),     // the GPU writes word 1: line 0 is stale
        S::Unmap(0),
        S::Map(1, FromDevice), // the camera: copy in through the cache
        S::DeviceWrite(1, 0),  // into its slot
        S::Unmap(1),           // copy back: words 0 and 1 of the slot
        S::BeginCpu(FromDevice),
        S::CpuRead(0),
        S::CpuRead(1),
        S::EndCpu(FromDevice),
    ];
    assert_eq!(violations(&[false, true], &steps, Mutation::None), 0);
    // Without the invalidate the copy takes the stale word 1 and puts it
    // back over the GPU's.
    assert!(violations(&[false, true], &steps, Mutation::IgnoreBounceEvents) > 0);
}

#[test]
fn a_32_bit_camera_maps_a_dma32_buffer_directly_and_nothing_else_as_if_it_did() {
    // A 32-bit camera writes a frame the CPU then reads. On a DMA32 heap's
    // buffer it reaches every page: its mapping is direct, and costs what
    // any direct writer's does.
    let steps = [
        S::Map(0, FromDevice),
        S::DeviceWrite(0, 0),
        S::DeviceWrite(0, 5),
        S::DeviceWrote(0),
        S::Unmap(0),
        S::BeginCpu(FromDevice),
        S::CpuRead(0),
        S::CpuRead(5),
        S::EndCpu(FromDevice),
    ];
    assert_eq!(violations(&[false], &steps, Mutation::None), 0);
    // Above 4 GiB its mapping bounces and syncs itself: safe too.
    assert_eq!(violations(&[true], &steps, Mutation::None), 0);
    // Taken to reach that buffer, its mapping skips the CPU sync: the
    // slot is never copied back, and the frame is lost.
    assert!(violations(&[true], &steps, Mutation::AssumeReach) > 0);
}

#[test]
fn cpu_writes_reach_a_bouncing_reader_mapped_across_the_bracket() {
    // A display whose mapping bounces stays mapped while the CPU draws:
    // every `EndCpu` copies the buffer into its slot with the CPU, through
    // the cache, so a frame costs no clean ...
    let mut own = settled();
    assert_eq!(own.on(BounceRead).ops, CacheOps::NONE); // the display maps
    for _ in 0..3 {
        assert_eq!(own.on(BeginCpu(ToDevice)).ops, CacheOps::NONE);
        assert_eq!(own.on(EndCpu(ToDevice)).ops, CacheOps::NONE);
        assert_eq!(own.on(BounceRead).ops, CacheOps::NONE);
    }
    // ... unless a direct display is mapped next to it.
    own.on(Map(NONCOHERENT, ToDevice));
    assert_eq!(own.on(BeginCpu(ToDevice)).ops, CacheOps::NONE);
    assert_eq!(own.on(EndCpu(ToDevice)).ops, ops(1, 0));
    assert_eq!(own.on(BounceRead).ops, CacheOps::NONE);

    let frame = |word| {
        [
            S::BeginCpu(ToDevice),
            S::CpuWrite(word),
            S::EndCpu(ToDevice), // copy into both bouncing slots
            S::Evict(word / 2),
            S::DeviceRead(0, word),
            S::DeviceRead(1, word),
            S::DeviceRead(2, word), // the direct display reads memory
        ]
    };
    let mut steps = vec![
        S::Map(0, ToDevice),
        S::Map(1, ToDevice),
        S::Map(2, ToDevice),
    ];
    for word in [0, 3, 5, 0] {
        steps.extend(frame(word));
    }
    assert_eq!(violations(&[true, true, false], &steps, Mutation::None), 0);
}

#[test]
fn nested_cpu_brackets_keep_cpu_writes_with_a_bouncing_writer() {
    // A GPU whose mapping bounces stays mapped while the CPU opens a
    // bracket within a bracket. Only the outermost begin copies the GPU's
    // slot into the buffer: a copy at the nested one would put the slot's
    // word 0 back over what the CPU wrote in between.
    let steps = [
        S::Map(0, Bidirectional),
        S::DeviceWrite(0, 1),       // into its slot
        S::BeginCpu(Bidirectional), // the slot is copied into the buffer
        S::CpuRead(1),
        S::CpuWrite(0),
        S::BeginCpu(Bidirectional), // nested: no copy
        S::CpuRead(0),
        S::CpuWrite(3),
        S::EndCpu(Bidirectional),
        S::CpuRead(3),
        S::EndCpu(Bidirectional), // the buffer is copied into the slot
        S::DeviceRead(0, 0),
        S::DeviceRead(0, 3),
        S::Unmap(0),
        S::BeginCpu(FromDevice),
        S::CpuRead(0),
        S::CpuRead(1),
        S::CpuRead(3),
        S::EndCpu(FromDevice),
    ];
    assert_eq!(violations(&[true], &steps, Mutation::None), 0);
}

#[test]
fn an_unbalanced_end_keeps_a_bouncing_devices_writes() {
    // A camera whose mapping bounces wrote its slot; an `EndCpu` comes
    // without a `BeginCpu` while a display whose mapping bounces is
    // mapped. The end copies the buffer into both slots, so it first copies
    // the camera's slot into the buffer, as a begin would: the camera's
    // words survive the copy into its slot and reach the display's.
    let steps = [
        S::Map(0, FromDevice), // the camera
        S::Map(1, ToDevice),   // the display
        S::DeviceWrite(0, 2),
        S::DeviceWrite(0, 5),
        S::EndCpu(ToDevice), // without a begin
        S::DeviceRead(1, 2),
        S::DeviceRead(1, 5),
        S::Unmap(1),
        S::Unmap(0), // the camera's slot goes back into the buffer
        S::BeginCpu(FromDevice),
        S::CpuRead(2),
        S::CpuRead(5),
        S::EndCpu(FromDevice),
    ];
    assert_eq!(violations(&[true, true], &steps, Mutation::None), 0);
}

#[test]
fn unmapping_a_bouncing_writer_inside_a_bracket_keeps_cpu_writes() {
    // A GPU whose mapping bounces is unmapped while the CPU is inside a
    // bracket it began after the GPU wrote. The unmap copies the whole slot
    // into the buffer, so the slot first takes the buffer, the CPU's writes
    // included.
    let steps = [
        S::Map(0, Bidirectional),
        S::DeviceWrite(0, 1),
        S::BeginCpu(Bidirectional), // the slot is copied into the buffer
        S::CpuWrite(4),
        S::Unmap(0), // buffer into the slot, then the slot into the buffer
        S::CpuWrite(5),
        S::EndCpu(Bidirectional),
        S::BeginCpu(FromDevice),
        S::CpuRead(1),
        S::CpuRead(4),
        S::CpuRead(5),
        S::EndCpu(FromDevice),
    ];
    assert_eq!(violations(&[true], &steps, Mutation::None), 0);
}

// User space that skips SYNC (`unbracketed_cpu=trap`).

/// Runs `steps` on the cache model as `config` says; `devices` are
/// (coherent, fenced) pairs, none bounces.
fn model(devices: &[(bool, bool)], steps: &[S], config: Config) -> run::Outcome {
    let scenario = Scenario {
        coherent: devices.iter().map(|d| d.0).collect(),
        fenced: devices.iter().map(|d| d.1).collect(),
        bounce: vec![false; devices.len()],
        steps: steps.to_vec(),
    };
    run::run_with(&scenario, config)
}

/// One non-coherent, unfenced device (a display, a camera).
const ONE: &[(bool, bool)] = &[(false, false)];

/// The zeroes are cleaned out once, so that the next map cleans only
/// what the CPU wrote since.
const SETTLE: [S; 2] = [S::Map(0, ToDevice), S::Unmap(0)];

#[test]
fn a_user_write_without_sync_is_cleaned_before_a_noncoherent_map_when_trapped() {
    // The rules: the write faults, the map revokes the writable entries
    // and cleans.
    let mut own = settled();
    assert_eq!(own.on(UserFault(ToDevice)).ops, CacheOps::NONE);
    assert_eq!(own.user_access(), UserAccess::Write);
    let map = own.on(Map(NONCOHERENT, ToDevice));
    assert_eq!((map.ops, map.revoke), (ops(1, 0), true));
    assert_eq!(own.user_access(), UserAccess::None);

    // The model: the display reads what the CPU wrote without SYNC.
    let steps = [
        SETTLE.as_slice(),
        &[
            S::UserWrite(0),
            S::Map(0, ToDevice),
            S::DeviceRead(0, 0),
            S::Unmap(0),
        ],
    ]
    .concat();
    let trapped = model(ONE, &steps, Config::TRACKED_TRAP);
    assert!(trapped.safe(), "{:?}", trapped.violations);
    assert_eq!((trapped.cost.faults, trapped.cost.revokes), (1, 1));
    assert_eq!(trapped.cost.clean_bytes, 2 * BUFFER_BYTES);
    // Trusted, the exporter never hears of the write: no clean, stale read.
    let trusted = model(ONE, &steps, Config::TRACKED_TRUST);
    assert_eq!(trusted.cost.clean_bytes, BUFFER_BYTES);
    assert!(matches!(
        trusted.violations[..],
        [Violation::StaleDeviceRead { word: 0, .. }]
    ));
    // The system heap cleans at every map.
    assert!(model(ONE, &steps, Config::ALWAYS).safe());
}

#[test]
fn a_user_read_without_sync_after_a_noncoherent_write_is_invalidated_when_trapped() {
    // The rules: the read entries go at the map; the read after the
    // camera's unmap faults and invalidates.
    let mut own = settled();
    own.on(UserFault(FromDevice));
    assert!(own.on(Map(NONCOHERENT, FromDevice)).revoke);
    own.on(Unmap(NONCOHERENT, FromDevice));
    assert_eq!(own.on(UserFault(FromDevice)).ops, ops(0, 1));
    assert_eq!(own.user_access(), UserAccess::Read);

    // The model: the CPU read word 1 before (read-only entries), the line
    // is filled speculatively while the camera writes.
    let steps = [
        SETTLE.as_slice(),
        &[
            S::UserRead(1),
            S::Map(0, FromDevice),
            S::Fill(0),
            S::DeviceWrite(0, 1),
            S::Unmap(0),
            S::UserRead(1),
        ],
    ]
    .concat();
    let trapped = model(ONE, &steps, Config::TRACKED_TRAP);
    assert!(trapped.safe(), "{:?}", trapped.violations);
    assert_eq!(trapped.cost.invalidate_bytes, BUFFER_BYTES);
    assert_eq!(trapped.cost.faults, 2);
    let stale =
        |o: &run::Outcome| matches!(o.violations[..], [Violation::StaleCpuRead { word: 1, .. }]);
    assert!(stale(&model(ONE, &steps, Config::TRACKED_TRUST)));
    // Entries that outlive the map read the stale line without a fault.
    let ignored = Config::TRACKED_TRAP.with(Mutation::IgnoreRevoke);
    assert!(stale(&model(ONE, &steps, ignored)));
    assert!(model(ONE, &steps, Config::ALWAYS).safe());
}

#[test]
fn a_disciplined_read_write_cycle_costs_the_same_bytes_trapped_as_trusted() {
    // Bracketed accesses fault too (every user access goes through the
    // page tables), but cost no maintenance: the CPU alone (S5), the CPU
    // filling for a display (S3), reading back after a camera (S2), and a
    // read-write cycle next to a fenced GPU that stays mapped (S7).
    let cycle = [
        S::BeginCpu(Bidirectional),
        S::CpuRead(0),
        S::CpuWrite(0),
        S::CpuWrite(3),
        S::EndCpu(Bidirectional),
    ];
    let fill_and_show = [
        S::BeginCpu(ToDevice),
        S::CpuWrite(0),
        S::CpuWrite(1),
        S::EndCpu(ToDevice),
        S::Map(0, ToDevice),
        S::DeviceRead(0, 1),
        S::Unmap(0),
    ];
    let readback = [
        S::Map(0, FromDevice),
        S::DeviceWrite(0, 2),
        S::Unmap(0),
        S::BeginCpu(FromDevice),
        S::CpuRead(2),
        S::EndCpu(FromDevice),
    ];
    let fenced_gpu = [
        [S::Map(0, Bidirectional)].as_slice(),
        &[S::DeviceWrite(0, 3), S::DeviceWrote(0)],
        &cycle,
        &[S::DeviceRead(0, 3), S::DeviceWrite(0, 4), S::DeviceWrote(0)],
        &cycle,
    ]
    .concat();
    let fenced: &[(bool, bool)] = &[(false, true)];
    for (devices, frame) in [
        (ONE, cycle.as_slice()),
        (ONE, &fill_and_show),
        (ONE, &readback),
        (fenced, &fenced_gpu),
    ] {
        let steps = [frame, frame, frame].concat();
        let trapped = model(devices, &steps, Config::TRACKED_TRAP);
        let trusted = model(devices, &steps, Config::TRACKED_TRUST);
        assert!(trapped.safe() && trusted.safe(), "{steps:?}");
        assert_eq!(trapped.cost.bytes(), trusted.cost.bytes(), "{steps:?}");
        assert!(trapped.cost.faults > 0, "{steps:?}");
    }
}

/// RULE GAP in `ownership.rs`: with an unfenced writer mapped across the
/// bracket (S4), `BeginCpu` invalidates, and the first access inside the
/// bracket faults and cleans and invalidates again (the mapped writer keeps
/// the lines "stale", the open bracket forces the clean), once per fault.
#[test]
fn a_disciplined_cycle_next_to_a_mapped_unfenced_writer_costs_the_same_trapped() {
    let mut steps = vec![S::Map(0, Bidirectional)];
    for _ in 0..3 {
        steps.extend([
            S::DeviceWrite(0, 1),
            S::BeginCpu(Bidirectional),
            S::CpuRead(1),
            S::CpuWrite(1),
            S::EndCpu(Bidirectional),
        ]);
    }
    let trapped = model(ONE, &steps, Config::TRACKED_TRAP);
    let trusted = model(ONE, &steps, Config::TRACKED_TRUST);
    assert_eq!(trapped.cost.bytes(), trusted.cost.bytes());
}

#[test]
fn writable_entries_are_revoked_when_the_end_of_a_bracket_cleans() {
    // A display stays mapped; the CPU writes inside a bracket (faulting
    // writable entries). The end cleans: the entries must go with it, or a
    // later write without SYNC would dirty lines nobody cleans.
    let mut own = settled();
    own.on(Map(NONCOHERENT, ToDevice));
    own.on(BeginCpu(ToDevice));
    own.on(UserFault(ToDevice));
    let end = own.on(EndCpu(ToDevice));
    assert_eq!((end.ops, end.revoke), (ops(1, 0), true));
    assert_eq!(own.user_access(), UserAccess::None);
    // Read-only entries stay: they cannot dirty anything.
    own.on(BeginCpu(FromDevice));
    own.on(UserFault(FromDevice));
    assert!(!own.on(EndCpu(FromDevice)).revoke);
    assert_eq!(own.user_access(), UserAccess::Read);
}

#[test]
fn the_revocation_comes_before_the_clean_of_a_map() {
    // A user write races with a display's map (another thread of the
    // process). Revoked first, the write faults after the map: the rules
    // know the lines are dirty, and the display's next map cleans. Revoked
    // after the clean, the write slips in through the old entries unseen:
    // the next map cleans nothing and the display reads the old word.
    let steps = [
        SETTLE.as_slice(),
        &[
            S::UserWrite(0), // writable entries
            S::Map(0, ToDevice),
            S::UserWrite(1), // races with the map
            S::Unmap(0),
            S::Map(0, ToDevice),
            S::DeviceRead(0, 1),
            S::Unmap(0),
        ],
    ]
    .concat();
    let ordered = model(ONE, &steps, Config::TRACKED_TRAP);
    assert!(ordered.safe(), "{:?}", ordered.violations);
    assert_eq!(ordered.cost.clean_bytes, 3 * BUFFER_BYTES);
    let late = model(
        ONE,
        &steps,
        Config::TRACKED_TRAP.with(Mutation::RevokeAfterOps),
    );
    assert_eq!(late.cost.clean_bytes, 2 * BUFFER_BYTES);
    assert!(matches!(
        late.violations[..],
        [Violation::StaleDeviceRead { word: 1, .. }]
    ));
}

#[test]
fn a_user_fault_is_an_implicit_begin_that_invalidates_once() {
    // After a camera wrote, the first user read faults and invalidates;
    // the read-only entries then read on without faults or maintenance,
    // and a later write only upgrades them.
    let steps = [
        SETTLE.as_slice(),
        &[
            S::Map(0, FromDevice),
            S::DeviceWrite(0, 0),
            S::DeviceWrite(0, 5),
            S::Unmap(0),
            S::UserRead(0),
            S::UserRead(5),
            S::UserRead(0),
            S::UserWrite(5),
            S::UserWrite(4),
        ],
    ]
    .concat();
    let o = model(ONE, &steps, Config::TRACKED_TRAP);
    assert!(o.safe(), "{:?}", o.violations);
    assert_eq!(o.cost.bytes(), (BUFFER_BYTES, BUFFER_BYTES));
    assert_eq!((o.cost.faults, o.cost.revokes), (2, 0));
}

/// An uncached buffer, flushed at allocation.
fn uncached() -> Ownership {
    Ownership::with_lines(Policy::Uncached, 16, Lines::CLEAN)
}

#[test]
fn uncached_buffer_costs_nothing_with_noncoherent_importers() {
    let mut own = uncached();
    let frame = [
        Map(NONCOHERENT, FromDevice), // camera
        Unmap(NONCOHERENT, FromDevice),
        BeginCpu(Bidirectional),
        EndCpu(Bidirectional),
        Map(NONCOHERENT, ToDevice), // display
        Unmap(NONCOHERENT, ToDevice),
        Map(FENCED, FromDevice),
        DeviceWrote(FENCED),
        Unmap(FENCED, FromDevice),
    ];
    for _ in 0..10 {
        assert_eq!(total(&mut own, &frame), CacheOps::NONE);
    }
}

#[test]
fn uncached_buffer_drops_every_line_for_snoops_and_bounce_copies_only() {
    let mut own = uncached();
    // User space may have written around the cache unseen: a snooping
    // reader's map drops every line.
    assert_eq!(own.on(Map(COHERENT, ToDevice)).ops, ops(0, 1));
    own.on(BeginCpu(ToDevice));
    // The write bracket's end: the snooping reader must not see lines a
    // speculative fill left older than memory.
    assert_eq!(own.on(EndCpu(ToDevice)).ops, ops(0, 1));
    // A read changes nothing it could see.
    assert_eq!(
        total(&mut own, &[BeginCpu(FromDevice), EndCpu(FromDevice)]),
        CacheOps::NONE
    );
    own.on(Unmap(COHERENT, ToDevice));
    // A bounce copy reads through the cache: every line goes first, SYNC
    // or not; a copy into the buffer leaves dirty lines, written back and
    // dropped at once.
    assert_eq!(own.on(BounceRead).ops, ops(0, 1));
    assert_eq!(own.on(BounceWrote).ops, ops(1, 1));
    assert_eq!(own.on(BounceRead).ops, ops(0, 1));
}

/// Two bouncing importers of an uncached buffer, and user space that
/// writes between them without SYNC, as uncached buffers are used: the
/// second device must read the user's bytes, not lines that the first
/// one's copy-back left in the cache.
#[test]
fn uncached_bounce_copies_see_user_writes_made_without_sync() {
    let steps = [
        S::Map(0, FromDevice),
        S::DeviceWrite(0, 0),
        S::Unmap(0), // the copy-back goes through the cache
        S::UserWrite(0),
        S::Map(1, ToDevice), // the copy into its slot
        S::DeviceRead(1, 0),
    ];
    let scenario = Scenario {
        coherent: vec![false, false],
        fenced: vec![false, false],
        bounce: vec![true, true],
        steps: steps.to_vec(),
    };
    let o = run::run_with(&scenario, Config::UNCACHED);
    assert!(o.safe(), "{:?}", o.violations);
    let o = run::run_with(&scenario, Config::UNCACHED.with(Mutation::DropInvalidates));
    assert!(o
        .violations
        .iter()
        .any(|v| matches!(v, Violation::StaleDeviceRead { .. })));
}

/// A fence signal is applied where it happens (the exporter's fence
/// callback, atomic context): it never revokes (that sleeps), and it
/// invalidates at once where someone may read through the cache before
/// any call into the exporter: a coherent importer, or user entries.
#[test]
fn a_signal_invalidates_at_once_for_snoops_and_user_entries_and_never_revokes() {
    // A coherent importer beside a fenced writer.
    let mut own = settled();
    own.on(Map(FENCED, FromDevice));
    own.on(Map(COHERENT, ToDevice));
    let signal = own.on(DeviceWrote(FENCED));
    assert_eq!((signal.ops, signal.revoke), (ops(0, 1), false));
    // A user that kept read entries (faulted outside a bracket between
    // jobs) reads the next job's output through them: invalidated at the
    // signal, no fault needed.
    let mut own = settled();
    own.on(Map(FENCED, FromDevice));
    own.on(UserFault(FromDevice));
    assert_eq!(own.user_access(), UserAccess::Read);
    let signal = own.on(DeviceWrote(FENCED));
    assert_eq!((signal.ops, signal.revoke), (ops(0, 1), false));
    assert_eq!(own.user_access(), UserAccess::Read);
    // Nobody reads through the cache: the invalidate waits for the CPU.
    let mut own = settled();
    own.on(Map(FENCED, FromDevice));
    assert_eq!(own.on(DeviceWrote(FENCED)).ops, CacheOps::NONE);
}

/// While a fenced writer is mapped, the end of a CPU access removes the
/// user entries its faults made, so that a disciplined user's entries never
/// meet a signal (which would have to invalidate at once for them).
#[test]
fn the_end_of_a_cpu_access_revokes_entries_while_a_fenced_writer_is_mapped() {
    let mut own = settled();
    own.on(Map(FENCED, FromDevice));
    own.on(BeginCpu(FromDevice));
    own.on(UserFault(FromDevice));
    let end = own.on(EndCpu(FromDevice));
    assert!(end.revoke);
    assert_eq!(own.user_access(), UserAccess::None);
    assert_eq!(own.on(DeviceWrote(FENCED)).ops, CacheOps::NONE);
}
