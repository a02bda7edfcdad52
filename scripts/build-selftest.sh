#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds the upstream dmabuf-heaps selftest from the kernel source the test
# kernel is built from, static for arm64, with that kernel's uapi headers and
# the selftest's own Makefile. Cached per kernel version; prints the binary's
# path on its last line.
set -euo pipefail
. "$(dirname "$0")/env.sh"

version=$(cat "$KSRC/.debian-version" 2>/dev/null || echo "$KVER")
out=$CACHE_ROOT/selftest/$version
bin=$out/dmabuf-heap
if [ ! -x "$bin" ]; then
	rm -rf "$out"
	mkdir -p "$out"
	# The uapi headers (`make headers`: no .config needed), in a tree of
	# their own.
	make -s -C "$KSRC" O="$out/headers" ARCH=arm64 \
		headers >&2
	make -s -C "$KSRC/tools/testing/selftests/dmabuf-heaps" ARCH=arm64 \
		CROSS_COMPILE=aarch64-linux-gnu- OUTPUT="$out" \
		KHDR_INCLUDES="-isystem $out/headers/usr/include" "$bin" >&2
fi
echo "$bin"
