// SPDX-License-Identifier: GPL-2.0

//! The heaps of `/dev/dma_heap`, and what the module says of its own:
//! parameters (`/sys/module/rust_dmabuf_heap/parameters`) and debugfs
//! totals.

use crate::debugfs;
use std::path::Path;

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
