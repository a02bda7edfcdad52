#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make patches`: the abstractions and the heap as a `git format-patch`
# series against the kernel source of KVER (7.3), written to out/patches/:
# first each abstraction of rust/kernel/ as a kernel crate module (one patch
# each: the module, its C helpers, what it adds to the kernel crate's
# bindings, its line in lib.rs), then the heap as drivers/dma-buf/heaps/rust/
# with its Kconfig, Kbuild, C API and uAPI headers; between them one line
# of the dma-buf core (dma_buf_fops' get_unmapped_area, made here). Every
# file of ours comes from this checkout unchanged. The series is made in a
# scratch repository that holds the kernel files the patches change (so it
# is quick); it applies to
# the whole tree with `git apply` or `patch -p1` (scripts/check-intree.sh
# does, then builds and boots it). Prints the series' directory.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

out=$REPO_ROOT/out/patches
scratch=$CACHE_ROOT/series/$(basename "$KSRC")
version=$(cat "$KSRC/.debian-version" 2>/dev/null || echo "$KVER")
# The series' author: git's identity, or the project's on a machine with none.
ident=$(git var GIT_AUTHOR_IDENT 2>/dev/null | sed 's/>.*/>/') ||
	ident="rust-dmabuf-heap developers <rust-dmabuf-heap@localhost>"
[ -n "$ident" ] || ident="rust-dmabuf-heap developers <rust-dmabuf-heap@localhost>"

# The kernel files the series changes, as the kernel has them.
base_files=(MAINTAINERS rust/kernel/lib.rs rust/bindings/bindings_helper.h rust/helpers/helpers.c
	drivers/dma-buf/dma-buf.c drivers/dma-buf/heaps/Kconfig drivers/dma-buf/heaps/Makefile)

rm -rf "$scratch" "$out"
mkdir -p "$scratch" "$out"
for f in "${base_files[@]}"; do
	mkdir -p "$scratch/$(dirname "$f")"
	cp "$KSRC/$f" "$scratch/$f"
done
git -C "$scratch" init -q
git -C "$scratch" add -A
git -C "$scratch" -c user.name=base -c user.email=base@localhost commit -q -m "Linux $version"

# Adds FILES to MAINTAINERS section SECTION (made if missing) with LISTS.
maintainers() { # SECTION LISTS FILES...
	python3 scripts/maintainers-entry.py "$scratch/MAINTAINERS" "$ident" "$@"
}
rust_lists="rust-for-linux@vger.kernel.org,dri-devel@lists.freedesktop.org"
rust_lists+=",linaro-mm-sig@lists.linaro.org (moderated for non-subscribers)"

commit() { # SUBJECT BODY
	git -C "$scratch" add -A
	git -C "$scratch" -c "user.name=${ident% <*}" -c "user.email=$(echo "$ident" | sed 's/.*<\(.*\)>/\1/')" \
		commit -q -m "$1" -m "$2" -m "Signed-off-by: $ident"
}

# One abstraction: MODULE CFG HELPERS INCLUDES CONSTS SUBJECT BODY, where
# HELPERS are files of rust/helpers/, INCLUDES headers for bindings_helper.h
# and CONSTS TYPE:NAME for its RUST_CONST_HELPER_ lines (with + for spaces
# in TYPE; all space-separated, possibly empty), CFG the Kconfig symbol the
# module needs (or empty).
abstraction() {
	local module=$1 cfg=$2 helpers=$3 includes=$4 consts=$5 subject=$6 body=$7
	cp "rust/kernel/$module.rs" "$scratch/rust/kernel/$module.rs"
	for h in $helpers; do
		cp "rust/helpers/$h" "$scratch/rust/helpers/$h"
	done
	python3 - "$scratch" "$module" "$cfg" "$helpers" "$includes" "$consts" <<'EOF'
import re, sys
scratch, module, cfg, helpers, includes, consts = sys.argv[1:]

def insert_sorted(lines, new, key, block):
    """Inserts `new` before the first line of `block` (the indexes of the
    sorted block) whose key sorts after `key`, or after the block."""
    for i in block:
        k = lines[i][1]
        if k is not None and k > key:
            lines.insert(i, (new, None))
            return
    lines.insert(block[-1] + 1, (new, None))

# lib.rs: `pub mod`, in alphabetical order, behind its Kconfig symbol.
path = f"{scratch}/rust/kernel/lib.rs"
text = open(path).read().split("\n")
mods = [i for i, l in enumerate(text) if re.match(r"pub mod \w+;$", l)]
names = {i: text[i][len("pub mod "):-1] for i in mods}
at = next((i for i in mods if names[i] > module), mods[-1] + 1)
if at < len(text) and at > 0 and text[at - 1].startswith("#[cfg("):
    at -= 1
new = ([f"#[cfg({cfg})]"] if cfg else []) + [f"pub mod {module};"]
text[at:at] = new
open(path, "w").write("\n".join(text))

# helpers.c: `#include "x.c"`, in alphabetical order.
path = f"{scratch}/rust/helpers/helpers.c"
text = open(path).read().split("\n")
for h in helpers.split():
    inc = [i for i, l in enumerate(text) if re.match(r'#include "[\w/.-]+\.c"$', l)]
    at = next((i for i in inc if text[i][len('#include "'):-1] > h), inc[-1] + 1)
    text.insert(at, f'#include "{h}"')
open(path, "w").write("\n".join(text))

# bindings_helper.h: headers among the <linux/...> ones, in order, and
# constants after the kernel's own.
path = f"{scratch}/rust/bindings/bindings_helper.h"
text = open(path).read().split("\n")
def main_includes():
    """The longest run of consecutive <linux/...> includes: the sorted
    block (the file starts with includes that must come first)."""
    runs, run = [], []
    for i, l in enumerate(text):
        if re.match(r"#include <linux/[\w/.-]+>$", l):
            run.append(i)
        elif run:
            runs.append(run)
            run = []
    return max(runs + [run], key=len)
for h in includes.split():
    if f"#include <{h}>" in text:
        continue
    inc = main_includes()
    at = next((i for i in inc if text[i][len("#include <"):-1] > h), inc[-1] + 1)
    text.insert(at, f"#include <{h}>")
for pair in consts.split():
    ctype, name = pair.split(":")
    ctype = ctype.replace("+", " ")
    last = max(i for i, l in enumerate(text) if l.startswith("const gfp_t RUST_CONST_HELPER_"))
    text.insert(last + 1, f"const {ctype} RUST_CONST_HELPER_{name} = {name};")
open(path, "w").write("\n".join(text))
EOF
	local files=("rust/kernel/$module.rs")
	for h in $helpers; do files+=("rust/helpers/$h"); done
	maintainers "RUST [DMA-BUF]" "$rust_lists" "${files[@]}"
	commit "$subject" "$body"
}

abstraction page_block "" "page-block.c" "linux/gfp.h linux/highmem.h linux/vmstat.h" \
	"gfp_t:GFP_HIGHUSER gfp_t:GFP_USER gfp_t:__GFP_DMA32 gfp_t:__GFP_NORETRY gfp_t:__GFP_RETRY_MAYFAIL gfp_t:__GFP_RECLAIM gfp_t:__GFP_COMP gfp_t:__GFP_ACCOUNT" \
	"rust: add page_block: blocks of pages of any order" \
	"kernel::page::Page owns a single page. A buffer allocator (a dma-buf
heap, a page pool) allocates blocks of 2^order pages at once, with GFP
modifiers that kernel::alloc::Flags does not name, and keeps freed blocks
on their head page's lru link so that keeping a block allocates nothing.

Add PageBlock (an owned block of any order, which may count its size in an
owner's counter while it lives), BlockList (blocks on their head pages'
lru links) and Gfp (allocation flags with the modifiers such allocators
use)."

abstraction mm_stat "" "vmstat.c" "linux/vmstat.h" "" \
	"rust: add mm_stat: the page allocator's counters" \
	"An allocator of many pages checks what the page allocator has before it
takes them: RAM, free pages, free CMA pages (which serve movable
allocations only) and MemAvailable. Add those counters."

abstraction task_signal "" "signal-fatal.c" "linux/sched/signal.h" "" \
	"rust: add task_signal: fatal_signal_pending and cond_resched" \
	"A long allocation loop stops early for a killed task, as the system
dma-buf heap does; kernel::task::Task has signal_pending only. Add
fatal_signal_pending() for the current task, and cond_resched() for a
long job's loop to let others run on kernels without preemption."

abstraction vmap "" "vmap.c" "linux/vmalloc.h linux/highmem.h" "" \
	"rust: add vmap: kernel mappings of page blocks" \
	"An exporter's vmap maps a buffer's page blocks contiguously, cached or
write-combined, and keeps aliases coherent around CPU access. Add
KernelMapping (unmapped on drop) with the alias maintenance."

abstraction sg_table "" "scatterlist-pages.c" "linux/scatterlist.h" "" \
	"rust: add sg_table: tables over page blocks" \
	"SGTable<Owned> owns its pages and maps them for one bound device. A
buffer shared through dma-buf needs one table per importer, over pages it
keeps itself, with entries no longer than that importer's device maps.
Add BlockTable, which dereferences to SGTable."

abstraction dma_mapping "CONFIG_HAS_DMA" "dma-streaming.c" "linux/dma-map-ops.h linux/swiotlb.h" "" \
	"rust: add dma_mapping: streaming mappings for any device" \
	"An exporter maps its tables for importers' devices, of which it holds
only references, maps and unmaps on request, may skip the CPU sync, and
syncs whole tables or ranges when ownership of the buffer moves. Add
DeviceTable on ARef<Device>, and what the DMA layer says of a device:
coherence, why its mappings may bounce, whether memory below an address
is within its direct reach (so that a 32-bit device mapping memory below
4 GiB does not bounce), its longest segment."

abstraction mm_pfnmap "CONFIG_MMU" "mm-pfnmap.c" "linux/huge_mm.h" "unsigned+int:PMD_ORDER" \
	"rust: add mm_pfnmap: PFN mappings filled at mmap or by faults" \
	"An exporter that must see every user access maps PFNs from a fault
handler, read-only or writable, and zaps them again; one that need not
remaps the vma at mmap. kernel::mm::virt sets up mixed maps of struct
page only. Add PfnMap for a VmaNew, and the fault-side insert and zap on
a VmaRef. Where the kernel maps PFNs with PMD entries, a huge_fault
handler maps a naturally aligned 2 MiB run with one (HugeEntry, which
also checks what the mm core leaves to the handler: that the entry lies
in the vma)."

abstraction shrinker "" "" "linux/shrinker.h" "" \
	"rust: add shrinker: registration of a Shrink implementation" \
	"Caches give memory back under reclaim through a shrinker; Rust Binder
registers its own with the raw bindings. Add Registration<T: Shrink>,
which keeps the cache alive until the shrinker is freed."

abstraction dma_fence "CONFIG_DMA_SHARED_BUFFER" "dma-fence.c" "linux/dma-fence.h" "" \
	"rust: add dma_fence: references, waits and callbacks" \
	"An exporter that learns of device work from fences waits for them and
hooks callbacks on them. Add Fence (ARef-counted) and Callback<T>, a
pinned dma_fence_cb with an OnSignal payload, removed before it is
freed."

abstraction dma_resv "CONFIG_DMA_SHARED_BUFFER" "dma-resv-interruptible.c" "" "" \
	"rust: add dma_resv: waits and fence identities" \
	"CPU access to a shared buffer waits for the implicit-sync fences of its
reservation object, and an exporter tells new writers from known ones by
their fences' identities. Add Resv with an interruptible wait and the
(context, seqno) of the fences of one usage."

abstraction dma_buf "CONFIG_DMA_SHARED_BUFFER" "" "linux/dma-buf.h" "" \
	"rust: add dma_buf: an exporter abstraction" \
	"Add the exporter side of dma-buf: an Exporter #[vtable] trait whose
associated Attachment (a ForeignOwnable, as miscdevice's Ptr) attach
returns and map, unmap and detach borrow or take back; one static set of
C tables per exporter type; export(), DmaBuf and DmaBufFile; mmap and
fault hooks on the kernel crate's vma types."

abstraction dma_heap "CONFIG_DMABUF_HEAPS" "" "linux/dma-heap.h" "" \
	"rust: add dma_heap: heaps that allocate dma-bufs" \
	"Add Allocator, a heap that allocates and exports dma-bufs of an
Exporter type, and register(), which hands the heap to the dma-heap core
for ever (there is no dma_heap_remove)."

# The dma-buf core: one line of dma_buf_fops, the only change of the
# kernel's own code in the series (so it is made here, not copied).
python3 - "$scratch/drivers/dma-buf/dma-buf.c" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
anchor = "\t.mmap\t\t= dma_buf_mmap_internal,\n"
if anchor not in text:
    sys.exit("make-patches: dma_buf_fops has no .mmap line to add get_unmapped_area after")
text = text.replace(anchor, anchor + "\t.get_unmapped_area = thp_get_unmapped_area,\n", 1)
open(path, "w").write(text)
EOF
commit "dma-buf: place mappings where huge entries fit" \
	"An exporter can map a buffer's naturally aligned 2 MiB blocks with one
PMD entry each (vmf_insert_pfn_pmd from a huge_fault handler, as TTM and
vfio-pci do), but only at a virtual address congruent to the block
modulo PMD_SIZE. dma_buf_fops has no get_unmapped_area, so a dma-buf
mapped without a hint lands wherever the kernel finds room, 2 MiB-aligned
by chance alone, and the exporter writes 512 PTEs where one PMD entry
would do: user space has to reserve an aligned range and map over it
with MAP_FIXED to get them.

Use thp_get_unmapped_area, as ext4, xfs, erofs and fuse do: mappings of
2 MiB and more are placed so that the buffer offset and the address agree
modulo PMD_SIZE (the mapping's page offset is the buffer offset), and
anything smaller, a compat task or a hint that fits is placed as before.
mremap already treats this function as known good. Without
CONFIG_TRANSPARENT_HUGEPAGE it is NULL, and nothing changes.

The heap later in this series faults its 2 MiB chunks in with one entry
each; an 8 MiB frame mapped without a hint then takes 4 faults and 4
entries instead of 2048 of 4 KiB."

# The heap: its sources as they are in this checkout.
driver=$scratch/drivers/dma-buf/heaps/rust
mkdir -p "$driver" "$scratch/include/linux" "$scratch/include/uapi/linux"
git ls-files '*.rs' | grep -v / | xargs -I{} cp {} "$driver/"
mkdir -p "$driver/glue" "$driver/tests/kunit"
cp Kconfig Kbuild "$driver/"
cp glue/*.c glue/*.h glue/bindings.rs "$driver/glue/"
cp tests/kunit/*.rs "$driver/tests/kunit/"
cp tests/kunit_shim.c tests/rdh_test_fence.h "$driver/tests/"
cp include/linux/rust_dmabuf_heap.h "$scratch/include/linux/"
cp include/uapi/linux/rust_dmabuf_heap.h "$scratch/include/uapi/linux/"
printf '\nsource "drivers/dma-buf/heaps/rust/Kconfig"\n' >>"$scratch/drivers/dma-buf/heaps/Kconfig"
printf 'obj-$(CONFIG_DMABUF_HEAPS_RUST)\t+= rust/\n' >>"$scratch/drivers/dma-buf/heaps/Makefile"
maintainers "DMA-BUF HEAPS [RUST]" "$rust_lists" drivers/dma-buf/heaps/rust/ \
	include/linux/rust_dmabuf_heap.h include/uapi/linux/rust_dmabuf_heap.h
commit "dma-buf: heaps: add a heap with ownership-aware cache maintenance (Rust)" \
	"A system heap whose buffers know who owns them (the CPU, or a coherent
or non-coherent device, in which direction), so that CPU cache maintenance
runs only when ownership really changes: the state machine in
ownership.rs decides, cache_ops.rs acts on the heap's own maintenance
device, and importer mappings skip the CPU sync. Also an uncached heap
(write-combined CPU mappings), a page pool refilled by a background
worker, fence hooks for importers that stay mapped (include/linux/
rust_dmabuf_heap.h), CPU access by range (/dev/rust_dmabuf_heap,
include/uapi/linux/rust_dmabuf_heap.h) and KUnit suites
(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST).

It builds on the dma_buf, dma_heap, dma_fence, dma_resv, dma_mapping,
sg_table, page_block, vmap, mm_pfnmap, mm_stat, task_signal and shrinker
abstractions. The same sources build out of tree, where Kbuild compiles
the abstractions into the module when the kernel lacks them."

count=$(git -C "$scratch" rev-list --count HEAD~1)
git -C "$scratch" format-patch -q --cover-letter -o "$out" HEAD~"$count"
python3 scripts/cover-letter.py "$(ls "$out"/0000-*.patch)" rust/todo.rst
echo "$out"
