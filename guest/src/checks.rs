// SPDX-License-Identifier: GPL-2.0

//! The user-space checks of the heap, reported as the KTAP suite
//! `rdh_guest`. Each check states one behaviour; a failure says what was
//! seen instead.

use crate::{
    baseline::Baseline,
    dma, faults, heap_name, huge, isolation, kmemleak,
    kmsg::Kmsg,
    ktap::{Outcome, Suite, SKIP},
    misuse, module_params, pipelines, pool, pressure, ranges, selftest, stress, sys, tool,
    unbracketed, uncached, MODULE_NAME, MODULE_PATH,
};
use dma_buf::{DmaBuf, MappedDmaBuf};
use dma_heap::{Heap, HeapKind};
use std::{
    fs::File,
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

type Check = (&'static str, fn() -> Outcome);

const CHECKS: &[Check] = &[
    (
        "module_loads_and_registers_heap",
        module_loads_and_registers_heap,
    ),
    ("system_heap_is_present", system_heap_is_present),
    ("alloc_4k_is_zeroed_and_mappable", || {
        alloc_zeroed_and_mappable(4 * KIB)
    }),
    ("alloc_1m_is_zeroed_and_mappable", || {
        alloc_zeroed_and_mappable(MIB)
    }),
    ("alloc_8m_is_zeroed_and_mappable", || {
        alloc_zeroed_and_mappable(8 * MIB)
    }),
    ("alloc_64m_is_zeroed_and_mappable", || {
        alloc_zeroed_and_mappable(64 * MIB)
    }),
    ("odd_sizes_round_up_to_pages", odd_sizes_round_up_to_pages),
    (
        "cpu_writes_are_seen_through_another_mapping",
        cpu_writes_are_seen_through_another_mapping,
    ),
    ("close_frees_the_memory", close_frees_the_memory),
    (
        "len_beyond_ram_is_enomem_and_leaves_nothing",
        len_beyond_ram_is_enomem_and_leaves_nothing,
    ),
    ("wrapping_lengths_are_rejected", || {
        leaves_nothing(wrapping_lengths_are_rejected)
    }),
    (
        "killed_allocations_leave_nothing",
        killed_allocations_leave_nothing,
    ),
    (
        "cpu_owned_buffer_costs_no_cache_ops_for_100_syncs",
        cpu_owned_buffer_costs_no_cache_ops_for_100_syncs,
    ),
    ("importer_driver_loads", pipelines::importer_driver_loads),
    (
        "three_mapped_importers_cost_one_invalidate_and_one_clean_per_cpu_access",
        || {
            needs_tracking(
                pipelines::three_mapped_importers_cost_one_invalidate_and_one_clean_per_cpu_access,
            )
        },
    ),
    (
        "camera_gpu_display_with_cpu_readback_invalidates_once_per_frame",
        || {
            needs_tracking(
                pipelines::camera_gpu_display_with_cpu_readback_invalidates_once_per_frame,
            )
        },
    ),
    ("cpu_fill_for_display_cleans_once_per_frame", || {
        needs_tracking(pipelines::cpu_fill_for_display_cleans_once_per_frame)
    }),
    (
        "coherent_pipeline_costs_nothing",
        pipelines::coherent_pipeline_costs_nothing,
    ),
    (
        "coherent_reader_after_a_noncoherent_writer_invalidates_at_its_map",
        || {
            needs_tracking(
                pipelines::coherent_reader_after_a_noncoherent_writer_invalidates_at_its_map,
            )
        },
    ),
    (
        "uncached_heap_is_registered_unless_turned_off_or_bouncing",
        uncached::uncached_heap_is_registered_unless_turned_off_or_bouncing,
    ),
    (
        "uncached_buffer_is_flushed_once_then_costs_nothing_with_noncoherent_importers",
        uncached::uncached_buffer_is_flushed_once_then_costs_nothing_with_noncoherent_importers,
    ),
    (
        "uncached_buffer_from_the_pool_is_not_flushed",
        uncached::uncached_buffer_from_the_pool_is_not_flushed,
    ),
    (
        "uncached_coherent_importer_costs_an_invalidate_per_map_and_cpu_write_only",
        uncached::uncached_coherent_importer_costs_an_invalidate_per_map_and_cpu_write_only,
    ),
    (
        "uncached_access_without_sync_is_never_trapped_and_costs_nothing",
        uncached::uncached_access_without_sync_is_never_trapped_and_costs_nothing,
    ),
    (
        "uncached_user_mapping_is_write_combined",
        uncached::uncached_user_mapping_is_write_combined,
    ),
    (
        "first_access_outside_sync_is_logged_once_naming_the_process",
        || needs_traps(unbracketed::first_access_outside_sync_is_logged_once_naming_the_process),
    ),
    (
        "writer_without_sync_gets_its_clean_before_a_noncoherent_map",
        || needs_traps(unbracketed::writer_without_sync_gets_its_clean_before_a_noncoherent_map),
    ),
    (
        "reader_without_sync_after_a_device_write_gets_its_invalidate",
        || needs_traps(unbracketed::reader_without_sync_after_a_device_write_gets_its_invalidate),
    ),
    (
        "disciplined_user_pays_the_same_maintenance_and_never_faults_outside_a_bracket",
        || {
            needs_traps(unbracketed::disciplined_user_pays_the_same_maintenance_and_never_faults_outside_a_bracket)
        },
    ),
    ("revocation_reaches_every_mapping_and_process", || {
        needs_traps(unbracketed::revocation_reaches_every_mapping_and_process)
    }),
    ("private_mappings_are_read_only_or_einval", || {
        needs_traps(unbracketed::private_mappings_are_read_only_or_einval)
    }),
    (
        "private_mappings_never_show_a_physical_address",
        unbracketed::private_mappings_never_show_a_physical_address,
    ),
    (
        "a_bracket_left_open_by_a_killed_process_excuses_no_later_fault",
        || needs_traps(unbracketed::a_bracket_left_open_by_a_killed_process_excuses_no_later_fault),
    ),
    ("reader_whose_entries_stay_sees_a_signalled_write", || {
        needs_traps(unbracketed::reader_whose_entries_stay_sees_a_signalled_write)
    }),
    (
        "range_brackets_of_a_killed_process_are_ended",
        ranges::range_brackets_of_a_killed_process_are_ended,
    ),
    (
        "parameters_refuse_unknown_words",
        unbracketed::parameters_refuse_unknown_words,
    ),
    (
        "trapped_mappings_survive_mprotect_madvise_munmap_and_mremap",
        unbracketed::trapped_mappings_survive_mprotect_madvise_munmap_and_mremap,
    ),
    (
        "an_aligned_frame_of_2_mib_chunks_maps_one_entry_per_chunk",
        || needs_traps(huge::an_aligned_frame_of_2_mib_chunks_maps_one_entry_per_chunk),
    ),
    ("huge_entries_survive_fork_mprotect_and_half_munmap", || {
        needs_traps(huge::huge_entries_survive_fork_mprotect_and_half_munmap)
    }),
    ("unhinted_mappings_are_placed_for_huge_entries", || {
        needs_traps(huge::unhinted_mappings_are_placed_for_huge_entries)
    }),
    (
        "unbalanced_and_mismatched_syncs_keep_the_data",
        misuse::unbalanced_and_mismatched_syncs_keep_the_data,
    ),
    (
        "close_while_mapped_frees_at_munmap",
        misuse::close_while_mapped_frees_at_munmap,
    ),
    (
        "importer_may_detach_after_the_fd_is_closed",
        misuse::importer_may_detach_after_the_fd_is_closed,
    ),
    (
        "fenced_writer_costs_one_invalidate_per_cpu_read_after_its_frames",
        || {
            needs_tracking(
                pipelines::fenced_writer_costs_one_invalidate_per_cpu_read_after_its_frames,
            )
        },
    ),
    ("cpu_read_waits_for_an_implicit_write_fence", || {
        needs_tracking(pipelines::cpu_read_waits_for_an_implicit_write_fence)
    }),
    (
        "implicit_write_fence_signalled_before_the_read_counts_once",
        || needs_tracking(pipelines::implicit_write_fence_signalled_before_the_read_counts_once),
    ),
    ("range_sync_maintains_only_its_pages", || {
        needs_tracking(ranges::range_sync_maintains_only_its_pages)
    }),
    (
        "read_outside_a_range_bracket_is_handled_as_unbracketed",
        || needs_tracking(ranges::read_outside_a_range_bracket_is_handled_as_unbracketed),
    ),
    ("range_sync_bad_requests_are_clean_errnos", || {
        needs_tracking(ranges::range_sync_bad_requests_are_clean_errnos)
    }),
    (
        "close_while_vmapped_frees_at_vunmap",
        misuse::close_while_vmapped_frees_at_vunmap,
    ),
    (
        "freed_contents_never_reach_a_new_buffer",
        isolation::freed_contents_never_reach_a_new_buffer,
    ),
    (
        "allocation_racing_the_pool_worker_reads_zero",
        isolation::allocation_racing_the_pool_worker_reads_zero,
    ),
    (
        "every_allocation_failure_is_enomem_and_leaves_nothing",
        faults::every_allocation_failure_is_enomem_and_leaves_nothing,
    ),
    (
        "freed_buffers_fill_the_pool_up_to_its_limit",
        pool::freed_buffers_fill_the_pool_up_to_its_limit,
    ),
    (
        "an_idle_pool_goes_back_within_the_window",
        pool::an_idle_pool_goes_back_within_the_window,
    ),
    (
        "full_pool_is_given_back_to_an_ordinary_process",
        pool::full_pool_is_given_back_to_an_ordinary_process,
    ),
    (
        "exhausting_memory_is_enomem_without_the_oom_killer",
        pressure::exhausting_memory_is_enomem_without_the_oom_killer,
    ),
    (
        "exhausting_memory_with_a_pool_of_small_chunks_spares_the_oom_killer",
        pressure::exhausting_memory_with_a_pool_of_small_chunks_spares_the_oom_killer,
    ),
    (
        "concurrent_random_operations_keep_data_and_leave_nothing",
        stress::concurrent_random_operations_keep_data_and_leave_nothing,
    ),
    (
        "pool_turned_off_leaves_no_page_behind",
        pool::pool_turned_off_leaves_no_page_behind,
    ),
    (
        "rdh_list_shows_our_heaps_policies_and_parameters",
        tool::rdh_list_shows_our_heaps_policies_and_parameters,
    ),
    (
        "rdh_alloc_holds_a_buffer_that_stats_sees",
        tool::rdh_alloc_holds_a_buffer_that_stats_sees,
    ),
    ("rdh_errors_say_what_to_do", tool::rdh_errors_say_what_to_do),
    (
        "rdh_bench_alloc_compares_the_heaps",
        tool::rdh_bench_alloc_compares_the_heaps,
    ),
    (
        "rdh_bench_pipeline_prints_the_maintenance_table",
        tool::rdh_bench_pipeline_prints_the_maintenance_table,
    ),
    (
        "rdh_bench_puts_module_parameters_back_when_stopped",
        tool::rdh_bench_puts_module_parameters_back_when_stopped,
    ),
    (
        "rdh_into_a_closed_pipe_ends_quietly",
        tool::rdh_into_a_closed_pipe_ends_quietly,
    ),
    ("module_cannot_be_unloaded", module_cannot_be_unloaded),
];

/// Bad input that the dma-heap and dma-buf cores reject before our heap is
/// called: these pass whatever the heap does, so they are no coverage of
/// its code. They stay, in a suite of their own, as checks of the contract
/// the heap relies on (a core that stopped checking would show here).
const CORE_CONTRACT: &[Check] = &[
    ("len_zero_is_einval", || leaves_nothing(len_zero_is_einval)),
    ("unknown_fd_flags_are_einval", || {
        leaves_nothing(unknown_fd_flags_are_einval)
    }),
    ("nonzero_heap_flags_are_einval", || {
        leaves_nothing(nonzero_heap_flags_are_einval)
    }),
    ("mmap_past_the_end_is_einval", || {
        leaves_nothing(mmap_past_the_end_is_einval)
    }),
    ("sync_without_direction_is_einval", || {
        leaves_nothing(sync_without_direction_is_einval)
    }),
    (
        "older_and_newer_allocation_structs_work",
        misuse::older_and_newer_allocation_structs_work,
    ),
    ("mmap_with_a_huge_offset_fails", || {
        leaves_nothing(misuse::mmap_with_a_huge_offset_fails)
    }),
    ("nonzero_fd_on_input_is_einval", || {
        leaves_nothing(misuse::nonzero_fd_on_input_is_einval)
    }),
];

/// Whether every DMA mapping bounces on this boot (`swiotlb=force`): then
/// the heap cannot track ownership and syncs like the system heap (its
/// debugfs `maintenance` line names the reason instead of `direct`).
pub fn dma_bounces_everywhere() -> bool {
    let stats = format!("{}/stats", debugfs_dir_of(&crate::cached_heap_name()));
    std::fs::read_to_string(stats).is_ok_and(|stats| {
        stats
            .lines()
            .any(|l| l.starts_with("maintenance: ") && l != "maintenance: direct")
    })
}

/// Runs a check of tracked maintenance counts, which apply only where the
/// heap can track (see [`dma_bounces_everywhere`]).
fn needs_tracking(check: fn() -> Outcome) -> Outcome {
    if dma_bounces_everywhere() {
        return Err(format!(
            "{SKIP}DMA mappings bounce on this boot: the heap syncs like the system heap"
        ));
    }
    check()
}

/// Runs a check of trapped user access, which applies only to the cached
/// heap: the uncached heap's write-combined mappings are never trapped
/// (`uncached_access_without_sync_is_never_trapped_and_costs_nothing`).
fn needs_traps(check: fn() -> Outcome) -> Outcome {
    if crate::uncached_boot() {
        return Err(format!(
            "{SKIP}the uncached heap never traps user access (write-combined mappings)"
        ));
    }
    needs_tracking(check)
}

/// Runs a bad-input check and then checks that it left nothing behind.
fn leaves_nothing(check: fn() -> Outcome) -> Outcome {
    let baseline = Baseline::take()?;
    check()?;
    baseline.check_returned()
}

/// Whether this boot runs under kmemleak (`make check-debug`).
fn kmemleak_boot() -> bool {
    std::env::var("rdh_kmemleak").as_deref() == Ok("1")
}

/// Runs every check and prints the suite.
/// Runs every check and prints the suite, then the upstream selftest's
/// suite and, under kmemleak, a last suite with its verdict on all of it.
pub fn run() {
    if kmemleak_boot() {
        kmemleak::forget_boot_reports();
    }
    for (suite, checks) in [("rdh_guest", CHECKS), ("rdh_core_contract", CORE_CONTRACT)] {
        let checks = selected(checks);
        let mut suite = Suite::begin(suite, checks.len());
        for (name, check) in checks {
            suite.report(name, check());
        }
        suite.end();
    }
    selftest::run();
    // With QEMU's edu device (rdh_topology set): real DMA.
    if std::env::var("rdh_topology").is_ok() {
        dma::run();
    }
    if kmemleak_boot() {
        let mut suite = Suite::begin("rdh_kmemleak", 1);
        suite.report("finds_no_leak", kmemleak::finds_no_leak());
        suite.end();
    }
}

/// The checks to run: all, or with `rdh_only=WORD[,WORD]...` on the kernel
/// command line (for quick experiments) those
/// whose names contain a word, after the first check (it loads the module).
fn selected(checks: &'static [Check]) -> Vec<&'static Check> {
    let Ok(words) = std::env::var("rdh_only") else {
        return checks.iter().collect();
    };
    let wanted = |name: &str| words.split(',').any(|word| name.contains(word));
    checks
        .iter()
        .enumerate()
        .filter(|(i, (name, _))| (std::ptr::eq(checks, CHECKS) && *i == 0) || wanted(name))
        .map(|(_, check)| check)
        .collect()
}

/// Loads the modules and runs only the real-DMA suite (`rdh_mode=dma`).
pub fn run_dma_only() {
    let mut suite = Suite::begin("rdh_dma_setup", 3);
    suite.report("modules_load", load_modules());
    suite.report(
        "memory_is_charged_to_the_memcg_with_mem_accounting",
        memory_is_charged_to_the_memcg_with_mem_accounting(),
    );
    suite.report(
        "uncached_heap_is_registered_unless_turned_off_or_bouncing",
        uncached::uncached_heap_is_registered_unless_turned_off_or_bouncing(),
    );
    suite.end();
    dma::run();
}

pub fn heap_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/dma_heap/{name}"))
}

fn our_heap() -> Result<Heap, String> {
    Heap::new(HeapKind::Custom(heap_path(&heap_name()))).map_err(|e| format!("open heap: {e}"))
}

pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

pub fn expect_errno<T>(result: io::Result<T>, errno: i32, what: &str) -> Outcome {
    match result {
        Ok(_) => Err(format!("{what}: succeeded, expected errno {errno}")),
        Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
        Err(e) => Err(format!("{what}: {e}, expected errno {errno}")),
    }
}

/// Bytes of live dma-bufs exported under `exp_name`, from the dma-buf
/// core's debugfs listing (independent of our own bookkeeping).
pub fn exported_bytes(exp_name: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo")
        .map_err(|e| format!("read bufinfo: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields.len() >= 5 && fields[4] == exp_name).then(|| fields[0].parse::<u64>().ok())?
        })
        .sum())
}

/// Loads the heap module and the importer test driver (for `make bench`).
pub fn load_modules() -> Outcome {
    module_loads_and_registers_heap()?;
    pipelines::importer_driver_loads()
}

/// Turns per-buffer debugfs files on or off (for buffers allocated after).
pub fn debugfs_buffers(on: bool) -> Outcome {
    let path = "/sys/module/rust_dmabuf_heap/parameters/debugfs_buffers";
    std::fs::write(path, if on { "Y" } else { "N" }).map_err(|e| format!("{path}: {e}"))
}

fn module_loads_and_registers_heap() -> Outcome {
    if crate::built_in() {
        // CONFIG_DMABUF_HEAPS_RUST=y: the heap exists before the first user
        // space program (this one) ran.
        debugfs_buffers(true)?;
        let path = heap_path(&heap_name());
        return ensure(path.exists(), || {
            format!("{} missing at boot with the heap built in", path.display())
        });
    }
    // The upstream system heap as a module (the drop-in kernel): loaded as
    // a board would, unless this heap is to be `system`.
    let standing_in = crate::standing_in();
    if Path::new(SYSTEM_HEAP_MODULE).exists() && !standing_in {
        sys::load_module(SYSTEM_HEAP_MODULE, "").map_err(|e| format!("system_heap.ko: {e}"))?;
    }
    // The rdh tool first, while there is no module to find.
    tool::before_the_module_loads()?;
    // A failed load must undo everything it did (the maintenance device,
    // the pools, debugfs), or every later load fails with EEXIST. The
    // dma-heap core refuses an empty name cleanly.
    expect_errno(
        sys::load_module(MODULE_PATH, "heap_name="),
        libc::EINVAL,
        "loading with an empty heap_name",
    )?;
    // Nor can a name hold a '/' (sysfs would show it as '!').
    expect_errno(
        sys::load_module(MODULE_PATH, "heap_name=camera/frames"),
        libc::EINVAL,
        "loading with a '/' in heap_name",
    )?;
    if !standing_in && heap_path("system").exists() {
        a_taken_name_fails_the_load_naming_the_fix()?;
    }
    sys::load_module(MODULE_PATH, &module_params()).map_err(|e| format!("finit_module: {e}"))?;
    if standing_in {
        the_upstream_system_heap_stays_unloaded()?;
    }
    // The checks read the buffers' own counters.
    debugfs_buffers(true)?;
    let path = heap_path(&heap_name());
    ensure(path.exists(), || {
        format!("{} missing after load", path.display())
    })
}

/// Where the drop-in kernel's initramfs keeps the upstream system heap.
const SYSTEM_HEAP_MODULE: &str = "/system_heap.ko";

/// `heap_name=system` where the upstream system heap is registered: the
/// load fails with EBUSY (the module finds the name taken before the
/// dma-heap core would), the log names the conflict and the fix, and nothing is left
/// behind (the load after it succeeds, with debugfs and the maintenance
/// device made anew).
fn a_taken_name_fails_the_load_naming_the_fix() -> Outcome {
    let mut kmsg = Kmsg::open_and_skip_backlog().map_err(|e| format!("/dev/kmsg: {e}"))?;
    let err = match sys::load_module(MODULE_PATH, "heap_name=system") {
        Ok(()) => return Err("loaded as system beside the upstream system heap".into()),
        Err(e) => e,
    };
    ensure(err.raw_os_error() == Some(libc::EBUSY), || {
        format!("heap_name=system: {err} (want EBUSY)")
    })?;
    let lines = kmsg.drain();
    let ours = lines
        .iter()
        .find(|l| l.contains("rust_dmabuf_heap") && l.contains("/dev/dma_heap/system exists"));
    println!(
        "    # conflict: {}",
        ours.map_or("(no message)", |l| l.as_str())
    );
    ensure(
        ours.is_some_and(|l| l.contains("blacklist system_heap") && l.contains("heap_name=")),
        || format!("no message naming the conflict and the fix in {lines:?}"),
    )?;
    ensure(
        !Path::new("/sys/kernel/debug/rust_dmabuf_heap/system").exists(),
        || "debugfs directory left behind by the failed load".into(),
    )
}

/// With this heap registered as `system`, the upstream module stays
/// unloaded (a board keeps it so with a modprobe blacklist; loading it
/// would fail, the name being taken, after the dma-heap core's sysfs stack
/// dump), and `/dev/dma_heap/system` is this heap's.
fn the_upstream_system_heap_stays_unloaded() -> Outcome {
    ensure(Path::new(&debugfs_dir_of("system")).exists(), || {
        "/dev/dma_heap/system has no debugfs directory of this heap".into()
    })?;
    ensure(!Path::new("/sys/module/system_heap").exists(), || {
        "the upstream system heap is loaded beside this one".into()
    })
}

fn system_heap_is_present() -> Outcome {
    let heap = Heap::new(HeapKind::System).map_err(|e| format!("open system heap: {e}"))?;
    let fd = heap
        .allocate(MIB as usize)
        .map_err(|e| format!("allocate: {e}"))?;
    let size = sys::dma_buf_size(&fd).map_err(|e| e.to_string())?;
    ensure(size == MIB, || {
        format!("system heap buffer has size {size}")
    })
}

/// Allocates `len` bytes from our heap.
pub fn allocate(len: u64) -> Result<OwnedFd, String> {
    our_heap()?
        .allocate(len as usize)
        .map_err(|e| format!("allocate {len}: {e}"))
}

fn map(fd: OwnedFd) -> Result<MappedDmaBuf, String> {
    DmaBuf::from(fd)
        .memory_map()
        .map_err(|e| format!("mmap: {e}"))
}

/// Reads the whole buffer under SYNC READ and checks every byte is zero.
fn check_zeroed(buf: &MappedDmaBuf) -> Outcome {
    let nonzero = buf
        .read(
            |bytes, _: Option<()>| Ok(bytes.iter().filter(|&&b| b != 0).count()),
            None,
        )
        .map_err(|e| format!("read: {e}"))?;
    ensure(nonzero == 0, || {
        format!("{nonzero} non-zero bytes in a new buffer")
    })
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 12)) as u8
}

/// Writes a pattern under SYNC WRITE, reads it back under SYNC READ.
fn check_write_read(buf: &mut MappedDmaBuf) -> Outcome {
    buf.write(
        |bytes, _: Option<()>| {
            bytes
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = pattern(i));
            Ok(())
        },
        None,
    )
    .map_err(|e| format!("write: {e}"))?;
    let bad = buf
        .read(
            |bytes, _: Option<()>| {
                Ok(bytes
                    .iter()
                    .enumerate()
                    .filter(|(i, &b)| b != pattern(*i))
                    .count())
            },
            None,
        )
        .map_err(|e| format!("read: {e}"))?;
    ensure(bad == 0, || {
        format!("{bad} bytes differ from what was written")
    })
}

fn alloc_zeroed_and_mappable(len: u64) -> Outcome {
    let fd = allocate(len)?;
    let size = sys::dma_buf_size(&fd).map_err(|e| e.to_string())?;
    ensure(size == len, || format!("size {size}, expected {len}"))?;
    let mut buf = map(fd)?;
    check_zeroed(&buf)?;
    check_write_read(&mut buf)
}

fn odd_sizes_round_up_to_pages() -> Outcome {
    for len in [1, PAGE + 1, 12_345, MIB + 1, 3 * MIB + 64 * KIB + 123] {
        let fd = allocate(len)?;
        let size = sys::dma_buf_size(&fd).map_err(|e| e.to_string())?;
        let expected = len.div_ceil(PAGE) * PAGE;
        ensure(size == expected, || {
            format!("len {len}: size {size}, expected {expected}")
        })?;
        let mut buf = map(fd)?;
        check_zeroed(&buf).map_err(|e| format!("len {len}: {e}"))?;
        check_write_read(&mut buf).map_err(|e| format!("len {len}: {e}"))?;
    }
    Ok(())
}

fn cpu_writes_are_seen_through_another_mapping() -> Outcome {
    let len = 2 * MIB + 68 * KIB;
    let fd = allocate(len)?;
    let mut first = sys::Mapping::new(&fd, len as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_WRITE)
        .map_err(|e| e.to_string())?;
    first
        .bytes_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = pattern(i) ^ 0x5a);
    sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_WRITE)
        .map_err(|e| e.to_string())?;
    drop(first);
    // A second mapping at an offset inside a 1 MiB chunk and across chunks.
    let offset_pages = 300usize;
    let second_len = len as usize - offset_pages * PAGE as usize;
    let second = sys::Mapping::new(&fd, second_len, offset_pages)
        .map_err(|e| format!("mmap at offset: {e}"))?;
    sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_READ)
        .map_err(|e| e.to_string())?;
    let base = offset_pages * PAGE as usize;
    let bad = second
        .bytes()
        .iter()
        .enumerate()
        .filter(|(i, &b)| b != pattern(base + i) ^ 0x5a)
        .count();
    sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_READ)
        .map_err(|e| e.to_string())?;
    ensure(bad == 0, || {
        format!("{bad} bytes differ in the second mapping")
    })
}

/// With the page pool off (`pool_limit_mib=0`) and emptied: the pages go
/// back to the system at once (`pool.rs` checks the pool). Free memory is the
/// whole system's, so the kernel's own work (RCU, workers) can move it by
/// megabytes between two reads: a measurement counts if one of three
/// attempts is clean, and a heap that keeps the pages fails all three.
fn close_frees_the_memory() -> Outcome {
    pool::turn_off()?;
    let mut outcome = close_frees_the_memory_at_once();
    for _ in 1..3 {
        if outcome.is_ok() {
            break;
        }
        outcome = close_frees_the_memory_at_once();
    }
    pool::set_limit_mib(-1)?;
    outcome
}

fn close_frees_the_memory_at_once() -> Outcome {
    let name = heap_name();
    let len = 64 * MIB;
    pool::wait_idle()?;
    let before = exported_bytes(&name)?;
    let free_before = sys::free_kib()?;
    let fd = allocate(len)?;
    let during = exported_bytes(&name)?;
    let free_during = sys::free_kib()?;
    drop(fd);
    let after = exported_bytes(&name)?;
    let free_after = sys::free_kib()?;
    ensure(during == before + len, || {
        format!("bufinfo: {before} -> {during} bytes while allocated")
    })?;
    ensure(after == before, || {
        format!("bufinfo: {before} bytes before, {after} after close")
    })?;
    ensure(
        free_before.saturating_sub(free_during) >= len / KIB - 1024,
        || {
            format!("free memory (MemFree and per-CPU lists) only fell from {free_before} to {free_during} KiB")
        },
    )?;
    // Allow 4 MiB of unrelated kernel activity.
    ensure(free_after + 4096 >= free_before, || {
        format!("free memory {free_before} KiB before, {free_after} KiB after close")
    })
}

fn read_number(path: &str) -> Result<u64, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("read {path}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("parse {path}: {e}"))
}

fn write_file(path: &str, text: &str) -> Outcome {
    std::fs::write(path, text).map_err(|e| format!("write {text:?} to {path}: {e}"))
}

/// With the dma-heap core's `mem_accounting` set (`make check`'s DMA boot
/// sets it; skipped elsewhere),
/// buffer pages are charged to the allocating task's memory cgroup and
/// uncharged when the buffer is freed: the page pool is bypassed (a pooled
/// page would stay charged to whoever freed it).
fn memory_is_charged_to_the_memcg_with_mem_accounting() -> Outcome {
    let enabled = std::fs::read_to_string("/sys/module/dma_heap/parameters/mem_accounting")
        .map_err(|e| format!("mem_accounting parameter: {e}"))?;
    if enabled.trim() != "Y" {
        return Err(format!(
            "{SKIP}boot without dma_heap.mem_accounting=1 (make check's DMA boot has it)"
        ));
    }
    let root = "/sys/fs/cgroup";
    if !std::path::Path::new(&format!("{root}/cgroup.procs")).exists() {
        sys::mount("cgroup2", root).map_err(|e| format!("mount cgroup2: {e}"))?;
    }
    write_file(&format!("{root}/cgroup.subtree_control"), "+memory")?;
    let group = format!("{root}/rdh");
    std::fs::create_dir_all(&group).map_err(|e| format!("mkdir {group}: {e}"))?;
    write_file(
        &format!("{group}/cgroup.procs"),
        &std::process::id().to_string(),
    )?;
    let current = format!("{group}/memory.current");
    let pool = format!("{}/pool", debugfs_dir());
    let outcome = (|| {
        let len = 16 * MIB;
        let (hits, bypassed) = (
            debugfs_number(&pool, "hit_bytes")?,
            debugfs_number(&pool, "bypassed_bytes")?,
        );
        let before = read_number(&current)?;
        let fd = allocate(len)?;
        let during = read_number(&current)?;
        drop(fd);
        let after = read_number(&current)?;
        ensure(during >= before + len, || {
            format!("memory.current {before} -> {during} with a {len}-byte buffer")
        })?;
        ensure(after + MIB <= during && after < before + MIB, || {
            format!("memory.current {during} -> {after} after close (before: {before})")
        })?;
        let (hits_now, bypassed_now) = (
            debugfs_number(&pool, "hit_bytes")?,
            debugfs_number(&pool, "bypassed_bytes")?,
        );
        ensure(hits_now == hits && bypassed_now == bypassed + len, || {
            format!(
                "the pool was used: hit_bytes {hits} -> {hits_now}, bypassed_bytes {bypassed} -> {bypassed_now}"
            )
        })
    })();
    write_file(
        &format!("{root}/cgroup.procs"),
        &std::process::id().to_string(),
    )?;
    let _ = std::fs::remove_dir(&group);
    outcome
}

/// Our heap's device node, for raw allocation ioctls.
pub fn open_heap() -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .open(heap_path(&heap_name()))
}

fn raw_alloc(len: u64, fd_flags: u32, heap_flags: u64) -> io::Result<OwnedFd> {
    let heap = open_heap()?;
    let mut data = sys::AllocationData {
        len,
        fd: 0,
        fd_flags,
        heap_flags,
    };
    sys::heap_alloc_raw(&heap, &mut data)
}

const RDWR_CLOEXEC: u32 = (libc::O_RDWR | libc::O_CLOEXEC) as u32;

fn len_zero_is_einval() -> Outcome {
    expect_errno(raw_alloc(0, RDWR_CLOEXEC, 0), libc::EINVAL, "len 0")
}

fn len_beyond_ram_is_enomem_and_leaves_nothing() -> Outcome {
    let before = exported_bytes(&heap_name())?;
    let free_before = sys::free_kib()?;
    expect_errno(
        raw_alloc(sys::total_ram() + PAGE, RDWR_CLOEXEC, 0),
        libc::ENOMEM,
        "RAM + 4 KiB",
    )?;
    expect_errno(raw_alloc(1 << 48, RDWR_CLOEXEC, 0), libc::ENOMEM, "1 << 48")?;
    let after = exported_bytes(&heap_name())?;
    let free_after = sys::free_kib()?;
    ensure(after == before, || {
        format!("bufinfo {before} -> {after} bytes")
    })?;
    ensure(free_after + 4096 >= free_before, || {
        format!("free memory {free_before} -> {free_after} KiB")
    })
}

fn wrapping_lengths_are_rejected() -> Outcome {
    // PAGE_ALIGN wraps these to 0 (the core's EINVAL) ...
    expect_errno(raw_alloc(u64::MAX, RDWR_CLOEXEC, 0), libc::EINVAL, "~0")?;
    expect_errno(
        raw_alloc(0xffff_ffff_ffff_f001, RDWR_CLOEXEC, 0),
        libc::EINVAL,
        "0xfffffffffffff001",
    )?;
    // ... while these are merely larger than RAM (ours).
    expect_errno(
        raw_alloc(0xffff_ffff_ffff_f000, RDWR_CLOEXEC, 0),
        libc::ENOMEM,
        "0xfffffffffffff000",
    )?;
    expect_errno(
        raw_alloc(0xffff_f000, RDWR_CLOEXEC, 0),
        libc::ENOMEM,
        "0xfffff000",
    )
}

fn unknown_fd_flags_are_einval() -> Outcome {
    for flags in [libc::O_NONBLOCK as u32, libc::O_APPEND as u32, 0x8000_0000] {
        expect_errno(
            raw_alloc(PAGE, RDWR_CLOEXEC | flags, 0),
            libc::EINVAL,
            &format!("fd_flags {flags:#x}"),
        )?;
    }
    Ok(())
}

fn nonzero_heap_flags_are_einval() -> Outcome {
    for flags in [1, 0x111111, 1 << 63] {
        expect_errno(
            raw_alloc(PAGE, RDWR_CLOEXEC, flags),
            libc::EINVAL,
            &format!("heap_flags {flags:#x}"),
        )?;
    }
    Ok(())
}

fn mmap_past_the_end_is_einval() -> Outcome {
    let fd = allocate(MIB)?;
    let pages = (MIB / PAGE) as usize;
    expect_errno(
        sys::Mapping::new(&fd, 2 * MIB as usize, 0),
        libc::EINVAL,
        "2 MiB of 1 MiB",
    )?;
    expect_errno(
        sys::Mapping::new(&fd, PAGE as usize, pages),
        libc::EINVAL,
        "page at the end",
    )?;
    expect_errno(
        sys::Mapping::new(&fd, 2 * PAGE as usize, pages - 1),
        libc::EINVAL,
        "last page + 1",
    )?;
    // The last page alone is fine.
    sys::Mapping::new(&fd, PAGE as usize, pages - 1)
        .map(drop)
        .map_err(|e| format!("last page: {e}"))
}

fn sync_without_direction_is_einval() -> Outcome {
    let fd = allocate(PAGE)?;
    expect_errno(
        sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_START),
        libc::EINVAL,
        "START without READ/WRITE",
    )?;
    expect_errno(
        sys::dma_buf_sync(&fd, sys::DMA_BUF_SYNC_RW | 0x100),
        libc::EINVAL,
        "unknown bit",
    )
}

/// The heap's debugfs directory.
pub fn debugfs_dir() -> String {
    debugfs_dir_of(&heap_name())
}

/// One number of the heap's debugfs `stats`.
pub fn stats_number(key: &str) -> Result<u64, String> {
    debugfs_number(&format!("{}/stats", debugfs_dir()), key)
}

pub use rdh::debugfs::dir_of as debugfs_dir_of;

/// One number from a `key: value` debugfs file.
pub use rdh::debugfs::number as debugfs_number;

/// The debugfs file of the buffer behind `fd` (named after its inode).
pub fn buffer_file(fd: &impl std::os::fd::AsFd) -> Result<String, String> {
    buffer_file_in(&debugfs_dir(), fd)
}

pub use rdh::debugfs::buffer_file_in;

/// 100 SYNC START/END pairs on a buffer no device has mapped: the CPU owns
/// it and nothing needs maintenance (debugfs counts 0 operations). The
/// buffer's debugfs file exists while the fd is open and goes with it.
fn cpu_owned_buffer_costs_no_cache_ops_for_100_syncs() -> Outcome {
    let fd = allocate(MIB)?;
    let file = buffer_file(&fd)?;
    ensure(debugfs_number(&file, "size")? == MIB, || {
        format!("{file}: wrong size")
    })?;
    let mut map = sys::Mapping::new(&fd, MIB as usize, 0).map_err(|e| format!("mmap: {e}"))?;
    for i in 0..100usize {
        let sync = |flags| sys::dma_buf_sync(&fd, flags).map_err(|e| e.to_string());
        sync(sys::DMA_BUF_SYNC_START | sys::DMA_BUF_SYNC_RW)?;
        map.bytes_mut()[i * 4096] = i as u8;
        sync(sys::DMA_BUF_SYNC_END | sys::DMA_BUF_SYNC_RW)?;
    }
    let cleans = debugfs_number(&file, "cleans")?;
    let invalidates = debugfs_number(&file, "invalidates")?;
    ensure((cleans, invalidates) == (0, 0), || {
        format!("{cleans} cleans and {invalidates} invalidates for a CPU-owned buffer")
    })?;
    drop(map);
    drop(fd);
    ensure(!std::path::Path::new(&file).exists(), || {
        format!("{file} still exists after close")
    })
}

/// SIGKILL lands at varied points of a 256 MiB allocation (inside the
/// chunk loop, which then stops with EINTR, or after it): either way every
/// page comes back.
fn killed_allocations_leave_nothing() -> Outcome {
    let name = heap_name();
    let before = exported_bytes(&name)?;
    let free_before = sys::free_kib()?;
    for delay_us in [0, 2_000, 10_000, 40_000, 150_000] {
        // SAFETY: The guest is single-threaded; the child only allocates and
        // exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _ = raw_alloc(256 * MIB, RDWR_CLOEXEC, 0);
            // SAFETY: Leave the child without running the parent's cleanup.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            return Err(format!("fork: {}", io::Error::last_os_error()));
        }
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        let mut status = 0;
        // SAFETY: `pid` is our child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut status, 0);
        }
    }
    let after = exported_bytes(&name)?;
    let free_after = sys::free_kib()?;
    ensure(after == before, || {
        format!("bufinfo {before} -> {after} bytes")
    })?;
    ensure(free_after + 4096 >= free_before, || {
        format!(
            "free memory {free_before} KiB before, {free_after} KiB after the killed allocations"
        )
    })
}

fn module_cannot_be_unloaded() -> Outcome {
    match sys::unload_module(MODULE_NAME) {
        Ok(()) => Err("delete_module succeeded: the heap would dangle".into()),
        // Built in: there is no module to unload.
        Err(e) if crate::built_in() && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EBUSY) | Some(libc::EWOULDBLOCK)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("delete_module: {e}, expected EBUSY or EWOULDBLOCK")),
    }?;
    ensure(heap_path(&heap_name()).exists(), || {
        "heap node vanished".into()
    })
}
