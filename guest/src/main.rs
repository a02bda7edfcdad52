// SPDX-License-Identifier: GPL-2.0

//! `/init` of the test VM.
//!
//! Mounts the pseudo file systems, quiets the console, loads the heap module
//! (its KUnit suite runs during the load), then either checks the heap from
//! user space and prints KTAP (`rdh_mode=check`, the default), shows a
//! short demonstration (`rdh_mode=run`) or runs the benchmark
//! (`rdh_mode=bench`). Finally it replays the kernel log
//! written since it started, so kernel and user output never interleave on
//! the console, and powers off.
//!
//! Kernel command line parameters the kernel does not know reach init as
//! environment variables: `rdh_mode`, `rdh_params` (module parameters,
//! comma separated), `rdh_heap` (`uncached`: check the uncached heap),
//! `rdh_kmemleak` (1: the kernel has kmemleak).

mod baseline;
mod bench;
mod checks;
mod child;
mod clients;
mod demo;
mod dma;
mod faults;
mod huge;
mod isolation;
mod kmemleak;
mod kmsg;
mod ktap;
mod misuse;
mod pipelines;
mod pool;
mod pressure;
mod ranges;
mod selftest;
mod stress;
mod sys;
mod tool;
mod unbracketed;
mod uncached;

/// The importer test driver's interface (shared with the `rdh` tool).
pub use rdh::importer;

/// Where the initramfs keeps the module.
pub const MODULE_PATH: &str = "/rust_dmabuf_heap.ko";
/// The module's name once loaded.
pub const MODULE_NAME: &str = "rust_dmabuf_heap";

/// Module parameters requested on the kernel command line.
pub fn module_params() -> String {
    std::env::var("rdh_params")
        .unwrap_or_default()
        .replace(',', " ")
}

/// The name of the heap the checks run on: the one the module registers
/// with those parameters, or with `rdh_heap=uncached` on the kernel command
/// line its uncached heap.
pub fn heap_name() -> String {
    if uncached_boot() {
        uncached_heap_name()
    } else {
        cached_heap_name()
    }
}

/// The name of the module's cached heap.
pub fn cached_heap_name() -> String {
    module_params()
        .split_whitespace()
        .find_map(|p| p.strip_prefix("heap_name="))
        .unwrap_or("rust_system")
        .to_string()
}

/// Whether this heap is `/dev/dma_heap/system` (`heap_name=system`, the
/// drop-in boot): then there is no upstream system heap to compare with.
pub fn standing_in() -> bool {
    cached_heap_name() == "system"
}

/// The name of the module's uncached heap.
pub fn uncached_heap_name() -> String {
    sibling_heap_name("uncached_heap_name", "-uncached")
}

/// The name of the module's DMA32 heap.
pub fn dma32_heap_name() -> String {
    sibling_heap_name("dma32_heap_name", "-dma32")
}

/// The name of the module's uncached DMA32 heap.
pub fn uncached_dma32_heap_name() -> String {
    sibling_heap_name("uncached_dma32_heap_name", "-uncached-dma32")
}

/// A sibling heap's name: as the loaded module shows it, else (before the
/// load) as set in the parameters, else the default suffix.
fn sibling_heap_name(param: &str, suffix: &str) -> String {
    let shown = format!("/sys/module/{MODULE_NAME}/parameters/{param}");
    // Empty where the heap is turned off.
    if let Ok(name) = std::fs::read_to_string(shown) {
        if !name.trim().is_empty() {
            return name.trim().to_string();
        }
    }
    let prefix = format!("{param}=");
    module_params()
        .split_whitespace()
        .find_map(|p| p.strip_prefix(prefix.as_str()).map(str::to_string))
        .unwrap_or_else(|| cached_heap_name() + suffix)
}

/// Whether the heap is built into the kernel (`CONFIG_DMABUF_HEAPS_RUST=y`):
/// its parameters are in sysfs with no module loaded (a loadable module's
/// directory has `initstate`).
pub fn built_in() -> bool {
    std::path::Path::new("/sys/module/rust_dmabuf_heap/parameters").exists()
        && !std::path::Path::new("/sys/module/rust_dmabuf_heap/initstate").exists()
}

/// Whether the checks run on the uncached heap (`rdh_heap=uncached`).
pub fn uncached_boot() -> bool {
    std::env::var("rdh_heap").as_deref() == Ok("uncached")
}

fn main() {
    for (fstype, target) in [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("debugfs", "/sys/kernel/debug"),
    ] {
        if let Err(err) = sys::mount(fstype, target) {
            println!("rdh-guest: mount {target}: {err}");
        }
    }
    // Anonymous memory by the page, as before the kernels had transparent
    // huge pages: the checks compare free memory to the page, and a
    // process's heap growing by 2 MiB at a time would blur it. The heap's
    // huge user entries do not depend on this setting (the mm core leaves
    // PFN mappings with a huge-fault handler to that handler), so its
    // huge-entry checks also show that.
    if let Err(err) = std::fs::write("/sys/kernel/mm/transparent_hugepage/enabled", "never") {
        if err.kind() != std::io::ErrorKind::NotFound {
            println!("rdh-guest: transparent_hugepage/enabled: {err}");
        }
    }
    // From here on the kernel logs only to its buffer; we replay it at the end.
    let kmsg = kmsg::Kmsg::open_and_skip_backlog();
    let _ = std::fs::write("/proc/sys/kernel/printk", "1");
    println!("rdh-guest: start");

    match std::env::var("rdh_mode").as_deref() {
        Ok("run") => demo::run(),
        Ok("bench") => bench::run(),
        Ok("dma") => checks::run_dma_only(),
        Ok("clients") => clients::run(),
        _ => checks::run(),
    }

    let _ = std::fs::write("/proc/sys/kernel/printk", "7");
    println!("rdh-guest: kernel log since start:");
    match kmsg {
        Ok(mut kmsg) => kmsg.replay(),
        Err(err) => println!("rdh-guest: cannot read /dev/kmsg: {err}"),
    }
    println!("rdh-guest: done");
    sys::power_off();
}
