# SPDX-License-Identifier: GPL-2.0
#
# Project entry points. The kernel build itself reads Kbuild, so the module
# also builds the usual way against any kernel tree (the production module;
# see Kbuild for RDH_KUNIT and RDH_TESTS):
#   make -C $KDIR M=$PWD ARCH=arm64 LLVM=1                          (clang)
#   make -C $KDIR M=$PWD ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-  (GCC)
#
#   make run     boot QEMU arm64 (bench kernel: kprobes), load the module,
#                show the heaps, allocation timing and the pipelines' cache
#                maintenance, system heap vs ours, through the rdh tool
#   make check   all tests (host, rustfmt, clippy, QEMU: KUnit + guest +
#                real DMA on the plain topology)
#   make check-debug  the QEMU suite under KASAN, lockdep, kmemleak, ...
#   make check-matrix  every kernel configuration x every DMA topology
#   make check-dropin  the heap as /dev/dma_heap/system on a kernel whose
#                upstream system heap is a module left unloaded
#   make check-clients Debian's libcamera and GStreamer capture frames from
#                it, byte-identical to the upstream system heap's
#   make bench   cache maintenance and allocation cost vs the system heap
#   make module  the production rust_dmabuf_heap.ko for KDIR=... (a board's
#                kernel tree; default: the QEMU test kernel) into out/
#   make tool    the rdh command-line tool, a static aarch64 binary
#   make graph   the module graph: what imports what (fails on a circle,
#                or an abstraction in rust/kernel/ importing the driver)
#   make patches the abstractions and the heap as a git format-patch series
#                against the kernel source, into out/patches/
#
# KVER=7.2 selects the Debian 7.2 kernel series instead of 7.3.

KVER ?= 7.3
export KVER

.PHONY: all setup kernel module tool graph patches run check check-debug check-matrix check-dropin check-clients check-intree bench clean

all: module

setup:
	@bash scripts/setup.sh

kernel: setup
	@bash scripts/build-kernel.sh

module: setup
	@RDH_BOARD=1 bash scripts/build-module.sh

# The rdh tool for the board: a static aarch64 binary (no libc needed there).
tool: setup
	@cargo build -q --release --locked -p rdh --target aarch64-unknown-linux-musl
	@echo target/aarch64-unknown-linux-musl/release/rdh

graph:
	@python3 scripts/module-graph.py

patches: setup
	@bash scripts/make-patches.sh

run: setup
	@bash scripts/vm.sh run

check:
	@bash scripts/check.sh

# The QEMU suite (KUnit, guest checks, upstream selftest) on the test kernel
# plus KASAN, lockdep, kmemleak and the other checkers of kernel/debug.config,
# also on the uncached heap, then the real-DMA suite where mappings bounce
# (DMA-API debugging watches every map, sync and unmap); any report fails it.
check-debug: setup
	@RDH_PROFILE=debug RDH_TIMEOUT=900 bash scripts/vm.sh check
	@RDH_PROFILE=debug RDH_TIMEOUT=900 RDH_APPEND=rdh_heap=uncached RDH_LOG=$(CURDIR)/target/vm-uncached.log bash scripts/vm.sh check
	@RDH_PROFILE=debug RDH_TIMEOUT=900 RDH_TOPOLOGY=dma32 bash scripts/vm.sh dma

# Kernel configurations boards run (test 7.3 and 7.2, production clang with
# kCFI, production GCC with MODVERSIONS) x DMA topologies (plain, IOMMU,
# 32-bit mask with RAM above 4 GiB, swiotlb=force, non-coherent); one table.
# RDH_MATRIX / RDH_TOPOLOGIES select rows / topologies.
check-matrix: setup
	@bash scripts/check-matrix.sh

# In place of the system heap, as a board would run it: the drop-in kernel
# (kernel/dropin.config: CONFIG_DMABUF_HEAPS_SYSTEM=m, never loaded) with
# this module loaded as heap_name=system; the guest suite and the upstream
# dmabuf-heaps selftest on /dev/dma_heap/system and its siblings.
check-dropin: setup
	@RDH_PROFILE=dropin RDH_PARAMS=heap_name=system RDH_LOG=$(CURDIR)/target/vm-dropin.log bash scripts/vm.sh check

# Unmodified real clients from Debian's arm64 packages on the drop-in
# kernel (scripts/client-rootfs.sh fetches them, cached like the kernel):
# libcamera's cam and GStreamer's libcamerasrc capture the virtual camera
# from /dev/dma_heap/system, served by this heap and, in a second boot, by
# the upstream system heap; the frames must be byte-identical.
check-clients: setup
	@bash scripts/check-clients.sh

# The heap as an in-tree kernel option, from the patch series (make
# patches) applied to a copy of the kernel source: checkpatch --strict, =m
# and =y kernels booted with the guest suite, KUnit and the kernel crate's
# doctests, CLIPPY=1 and rustdoc without warnings.
check-intree: setup
	@bash scripts/check-intree.sh

# Cache maintenance and allocation cost, system heap vs ours, in one boot.
bench:
	@bash scripts/bench.sh

clean:
	rm -f *.o *.ko *.mod *.mod.c .*.cmd Module.symvers modules.order glue_generated.rs layer_generated.rs helpers_generated.rs
	rm -f tests/*.o tests/.*.cmd tests/importer/*.o tests/importer/.*.cmd
	rm -rf out
	cargo clean
