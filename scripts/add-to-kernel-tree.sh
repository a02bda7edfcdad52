#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Adds the heap to a kernel source tree as drivers/dma-buf/heaps/rust, an
# in-tree option (CONFIG_DMABUF_HEAPS_RUST, tristate; Kconfig and Kbuild of
# this repository). The directory is a symlink to this checkout, so the tree
# builds exactly these sources and nothing is copied that could drift; a
# BSP that needs a self-contained tree can replace the link by a copy
# (cp -rL). Idempotent.
#   scripts/add-to-kernel-tree.sh KSRC
set -euo pipefail
ksrc=${1:?usage: $0 KSRC (a kernel source tree)}
repo=$(cd "$(dirname "$0")/.." && pwd)
heaps=$ksrc/drivers/dma-buf/heaps
[ -f "$heaps/Kconfig" ] && [ -f "$heaps/Makefile" ] ||
	{ echo "add-to-kernel-tree: $ksrc has no drivers/dma-buf/heaps" >&2; exit 1; }
if [ -e "$heaps/rust" ] && [ ! -L "$heaps/rust" ]; then
	echo "add-to-kernel-tree: $heaps/rust exists and is not our link" >&2
	exit 1
fi
if [ -L "$heaps/rust" ] && [ "$(readlink "$heaps/rust")" != "$repo" ]; then
	echo "add-to-kernel-tree: $heaps/rust pointed to $(readlink "$heaps/rust"); now to $repo" >&2
fi
ln -sfn "$repo" "$heaps/rust"
grep -qx 'source "drivers/dma-buf/heaps/rust/Kconfig"' "$heaps/Kconfig" ||
	printf '\nsource "drivers/dma-buf/heaps/rust/Kconfig"\n' >>"$heaps/Kconfig"
grep -qx 'obj-$(CONFIG_DMABUF_HEAPS_RUST)	+= rust/' "$heaps/Makefile" ||
	printf '\nobj-$(CONFIG_DMABUF_HEAPS_RUST)\t+= rust/\n' >>"$heaps/Makefile"
echo "add-to-kernel-tree: $heaps/rust -> $repo; enable CONFIG_DMABUF_HEAPS_RUST (m or y)"
