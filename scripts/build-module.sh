#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds rust_dmabuf_heap.ko against KDIR (default: the cached test kernel).
# Any compiler or clippy warning fails the build. Extra arguments go to make
# (e.g. CLIPPY=1).
set -euo pipefail
. "$(dirname "$0")/env.sh"

KDIR=${KDIR:-$(bash "$REPO_ROOT/scripts/build-kernel.sh" | tail -1)}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! make -C "$KDIR" M="$REPO_ROOT" LLVM=1 ARCH=arm64 "$@" >"$log" 2>&1; then
	cat "$log"
	echo "build-module: module build failed" >&2
	exit 1
fi
if grep -Eiq '(^|[^a-z_])(warning|error)(\[|:)' "$log"; then
	cat "$log"
	echo "build-module: warnings are errors in this project" >&2
	exit 1
fi
echo "$REPO_ROOT/rust_dmabuf_heap.ko"
