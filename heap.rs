// SPDX-License-Identifier: GPL-2.0

//! The heap object behind `/dev/dma_heap/<name>`: the context its buffers
//! share (`context.rs`) and its debugfs directory. The dma-heap core owns
//! one reference once the heap is registered (its `priv`; a heap can never
//! be removed).

use crate::{
    buffer::HeapBuffer,
    context::HeapContext,
    debugfs::HeapDir,
    dma_buf::{self, DmaBuf},
    dma_heap::{Allocator, HeapTable},
    glue,
    pool::PoolMode,
};
use kernel::{
    prelude::*,
    sync::{Arc, ArcBorrow},
};

/// A heap.
pub(crate) struct Heap {
    context: Arc<HeapContext>,
    /// The heap's debugfs directory, if it has one.
    debugfs: Option<HeapDir>,
}

impl Heap {
    /// A heap with its own maintenance device, a page pool in `pool` mode
    /// and, if `debugfs_name` is given, a debugfs directory of that name
    /// (its files are made by [`HeapDir::stats_file`] once the heap exists).
    pub(crate) fn new(debugfs_name: Option<&CStr>, pool: PoolMode) -> Result<Arc<Self>> {
        let context = HeapContext::new(debugfs_name.unwrap_or(c"private"), pool)?;
        Self::with(context, debugfs_name.map(HeapDir::new))
    }

    /// The uncached heap beside this one, sharing its pool and maintenance
    /// device, with a debugfs directory `debugfs_name` if given; `ENODEV`
    /// if the maintenance device's mappings would bounce.
    pub(crate) fn uncached(&self, debugfs_name: Option<&CStr>) -> Result<Arc<Self>> {
        Self::with(self.context.uncached()?, self.sibling_dir(debugfs_name))
    }

    /// The DMA32 heap beside this one: memory below 4 GiB from its own pool,
    /// the same maintenance device; a debugfs directory `debugfs_name` if
    /// given.
    pub(crate) fn dma32(&self, debugfs_name: &CStr) -> Result<Arc<Self>> {
        let context = self.context.dma32(debugfs_name)?;
        Self::with(context, self.sibling_dir(Some(debugfs_name)))
    }

    /// A debugfs directory `name` beside this heap's, if a name is given.
    fn sibling_dir(&self, name: Option<&CStr>) -> Option<HeapDir> {
        match (&self.debugfs, name) {
            (Some(dir), Some(name)) => Some(dir.beside(name)),
            (None, name) => name.map(HeapDir::new),
            (_, None) => None,
        }
    }

    fn with(context: Arc<HeapContext>, debugfs: Option<HeapDir>) -> Result<Arc<Self>> {
        Ok(Arc::new(Self { context, debugfs }, GFP_KERNEL)?)
    }

    /// What the heap's buffers share.
    pub(crate) fn context(&self) -> &Arc<HeapContext> {
        &self.context
    }

    /// The heap's debugfs directory, if any.
    pub(crate) fn debugfs(&self) -> Option<&HeapDir> {
        self.debugfs.as_ref()
    }

    /// Gives a freshly exported buffer its debugfs file (named after the
    /// dma-buf's inode), if per-buffer files are wanted.
    fn exported(&self, dmabuf: DmaBuf<HeapBuffer>) -> DmaBuf<HeapBuffer> {
        if let (Some(dir), true) = (&self.debugfs, glue::debugfs_buffers()) {
            let buffer: Arc<HeapBuffer> = dmabuf.exporter().into();
            if let Some(file) = dir.buffer_file(dmabuf.inode(), buffer.clone()) {
                buffer.set_debugfs_file(file);
            }
        }
        dmabuf
    }
}

impl Allocator for Heap {
    type Buffer = HeapBuffer;

    fn allocate(
        heap: ArcBorrow<'_, Self>,
        len: usize,
        fd_flags: u32,
        exp_name: &'static CStr,
    ) -> Result<DmaBuf<HeapBuffer>> {
        let buffer = HeapBuffer::new(heap.context.clone(), len)?;
        let dmabuf = dma_buf::export(buffer, len, fd_flags, exp_name, &glue::THIS_MODULE)?;
        Ok(heap.exported(dmabuf))
    }

    fn table() -> &'static HeapTable {
        static TABLE: HeapTable = HeapTable::of::<Heap>();
        &TABLE
    }
}
