# SPDX-License-Identifier: GPL-2.0
#
# Project entry points. The kernel build itself reads Kbuild, so the module
# also builds the usual way against any kernel tree:
#   make -C $KDIR M=$PWD LLVM=1 ARCH=arm64
#
#   make run     boot QEMU arm64, load the module, allocate from our heap
#                and from the system heap, print what happened
#   make check   all tests (host, rustfmt, clippy, QEMU: KUnit + guest)
#   make check-debug  the QEMU suite under KASAN, lockdep, kmemleak, ...
#   make bench   cache maintenance and allocation cost vs the system heap
#   make module  build rust_dmabuf_heap.ko (KDIR=... for a real board)
#
# KVER=7.2 selects the Debian 7.2 kernel series instead of 7.3.

KVER ?= 7.3
export KVER

.PHONY: all setup kernel module run check check-debug bench clean

all: module

setup:
	@bash scripts/setup.sh

kernel: setup
	@bash scripts/build-kernel.sh

module: setup
	@bash scripts/build-module.sh

run: setup
	@bash scripts/vm.sh run

check:
	@bash scripts/check.sh

# The QEMU suite (KUnit, guest checks, upstream selftest) on the test kernel
# plus KASAN, lockdep, kmemleak and the other checkers of kernel/debug.config;
# any report fails it.
check-debug: setup
	@RDH_PROFILE=debug RDH_TIMEOUT=900 bash scripts/vm.sh check

# Cache maintenance and allocation cost, system heap vs ours, in one boot.
bench:
	@bash scripts/bench.sh

clean:
	rm -f *.o *.ko *.mod *.mod.c .*.cmd Module.symvers modules.order ffi_generated.rs
	cargo clean
