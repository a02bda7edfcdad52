#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds rust_dmabuf_heap.ko (and, with RDH_TESTS=y, the test drivers)
# against KDIR (default: the cached kernel of RDH_PROFILE) with the toolchain
# that tree was built with (clang: LLVM=1; GCC: CROSS_COMPILE). The build
# directory is outside the checkout (MO=), one per kernel tree, checkout and
# variant: the test build (RDH_KUNIT=y, the KUnit suite compiled in) for
# profiles with KUnit, the production module otherwise. Any compiler or clippy
# warning fails the build. Extra arguments go to make (e.g. CLIPPY=1).
# RDH_BOARD=1 (make module KDIR=...) builds only the production module into
# out/<kernel release>/.
# Prints the module's path on its last line.
set -euo pipefail
. "$(dirname "$0")/env.sh"

# RDH_BOARD=1 (make module): the production module alone, for the kernel
# tree KDIR, into out/<kernel release>/ in the checkout.
tests=y
if [ "${RDH_BOARD:-}" = 1 ]; then
	RDH_KUNIT=n tests=n
fi
KDIR=${KDIR:-$(bash "$REPO_ROOT/scripts/build-kernel.sh" | tail -1)}
KDIR=$(cd "$KDIR" && pwd)
if [ ! -f "$KDIR/.config" ] || [ ! -f "$KDIR/include/config/kernel.release" ]; then
	echo "build-module: $KDIR is not a configured and prepared kernel build tree (make modules_prepare)" >&2
	exit 1
fi
variant=$([ "$RDH_KUNIT" = y ] && echo kunit || echo production)
if [ "${RDH_BOARD:-}" = 1 ]; then
	default_out=$REPO_ROOT/out/$(cat "$KDIR/include/config/kernel.release")
else
	default_out=$CACHE_ROOT/module/$(echo "$KDIR $REPO_ROOT" | sha256sum | cut -c1-12)-$(basename "$KDIR")-$variant
fi
out=${MODULE_OUT:-$default_out}
mkdir -p "$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# shellcheck disable=SC2046 # tree_toolchain prints one make variable
if ! make -C "$KDIR" M="$REPO_ROOT" MO="$out" ARCH=arm64 $(tree_toolchain "$KDIR") \
	RDH_KUNIT="$RDH_KUNIT" RDH_TESTS="$tests" "$@" >"$log" 2>&1; then
	cat "$log"
	echo "build-module: module build failed" >&2
	exit 1
fi
if grep -Eiq '(^|[^a-z_])(warning|error)(\[|:)' "$log"; then
	cat "$log"
	echo "build-module: warnings are errors in this project" >&2
	exit 1
fi
echo "$out/rust_dmabuf_heap.ko"
