// SPDX-License-Identifier: GPL-2.0

//! The heaps of `/dev/dma_heap`, and what the module says of its own:
//! parameters (`/sys/module/rust_dmabuf_heap/parameters`) and debugfs
//! totals.

use crate::debugfs;
use serde::Serialize;
use std::{os::unix::fs::MetadataExt, path::Path};

/// Where the dma-heap core puts its device nodes.
pub const DEV: &str = "/dev/dma_heap";
/// The module's parameters.
pub const PARAMETERS: &str = "/sys/module/rust_dmabuf_heap/parameters";

/// One heap of `/dev/dma_heap`.
pub struct HeapInfo {
    pub name: String,
    /// For the module's heaps: the `stats` file's lines (empty if debugfs
    /// is not mounted).
    pub ours: Option<Vec<(String, String)>>,
}

impl HeapInfo {
    /// A line of `stats`, if ours and readable.
    pub fn stat(&self, key: &str) -> Option<&str> {
        let stats = self.ours.as_ref()?;
        stats
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether the module is loaded.
pub fn module_loaded() -> bool {
    Path::new(PARAMETERS).exists()
}

/// The module's parameters, sorted by name (none if not loaded).
pub fn parameters() -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = std::fs::read_dir(PARAMETERS)
        .map(|dir| {
            dir.filter_map(|e| {
                let e = e.ok()?;
                let value = std::fs::read_to_string(e.path()).ok()?;
                Some((e.file_name().into_string().ok()?, value.trim().to_string()))
            })
            .collect()
        })
        .unwrap_or_default();
    params.sort();
    params
}

/// The module's cached heap's name (`heap_name`), if loaded.
pub fn our_heap_name() -> Option<String> {
    parameter("heap_name")
}

/// The module's uncached heap's name (`uncached_heap_name`), if loaded.
pub fn our_uncached_heap_name() -> Option<String> {
    parameter("uncached_heap_name")
}

/// The names the module's heaps may have: `heap_name` and its siblings'
/// (`uncached_heap_name`, `dma32_heap_name`, `uncached_dma32_heap_name`).
pub fn our_heap_names() -> Vec<String> {
    [
        "heap_name",
        "uncached_heap_name",
        "dma32_heap_name",
        "uncached_dma32_heap_name",
    ]
    .into_iter()
    .filter_map(parameter)
    .collect()
}

fn parameter(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("{PARAMETERS}/{name}"))
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Whether heap `name` is the module's: registered under one of its
/// names.
pub fn is_ours(name: &str) -> bool {
    our_heap_names().iter().any(|ours| ours == name)
}

/// The heaps, sorted by name; `Err` with what to do if there are none to
/// list.
pub fn list() -> Result<Vec<HeapInfo>, String> {
    let dir = match std::fs::read_dir(DEV) {
        Ok(dir) => dir,
        // devtmpfs makes the directory with the first heap: a kernel with
        // the dma-heap core (its class exists) may have none registered yet.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && std::path::Path::new("/sys/class/dma_heap").exists() =>
        {
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(format!(
                "cannot read {DEV}: {e} (is CONFIG_DMABUF_HEAPS on, and devtmpfs mounted on /dev?)"
            ))
        }
    };
    let mut heaps: Vec<HeapInfo> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .map(|name| {
            let ours = is_ours(&name).then(|| {
                debugfs::read(&format!("{}/stats", debugfs::dir_of(&name))).unwrap_or_default()
            });
            HeapInfo { name, ours }
        })
        .collect();
    heaps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(heaps)
}

/// A dma-buf some process holds open (from `/proc/*/fdinfo`).
#[derive(Serialize)]
pub struct OpenDmaBuf {
    pub pid: u32,
    pub comm: String,
    pub fd: u32,
    pub inode: u64,
    pub size: u64,
    pub exporter: String,
    /// What its user named it (`DMA_BUF_SET_NAME`; libcamera names every
    /// frame buffer), if anything.
    pub name: Option<String>,
}

/// Every dma-buf fd of every process, as Android's `dmabuf_dump` lists
/// them: fdinfo names the exporter, the fd link's inode the buffer.
pub fn open_dmabufs() -> Vec<OpenDmaBuf> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            continue;
        };
        for f in fds.flatten() {
            let Ok(fd) = f.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(info) = std::fs::read_to_string(f.path()) else {
                continue;
            };
            let field = |key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            };
            let (Some(exporter), Some(size)) = (field("exp_name"), field("size")) else {
                continue;
            };
            let inode = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).map_or(0, |m| m.ino());
            found.push(OpenDmaBuf {
                pid,
                comm: comm.trim().to_string(),
                fd,
                inode,
                size: size.parse().unwrap_or(0),
                exporter,
                name: field("name").filter(|n| !n.is_empty()),
            });
        }
    }
    found
}
