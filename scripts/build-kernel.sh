#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Configures and builds the arm64 kernel of RDH_PROFILE (scripts/env.sh) from
# the repo's config fragments, with the profile's toolchain. The build
# directory lives in the cache, keyed by kernel version, profile and
# fragment hash, so a second run is a no-op and a changed fragment gets its
# own tree. Prints the build directory (KDIR) on its last line.
set -euo pipefail
. "$(dirname "$0")/env.sh"

KDIR=$CACHE_ROOT/build/$(kernel_key)
kmake() { make -s -C "$KSRC" O="$KDIR" ARCH=arm64 "${KERNEL_TOOLCHAIN[@]}" "$@"; }

if [ ! -f "$KDIR/arch/arm64/boot/Image" ]; then
	echo "build-kernel: building the arm64 kernel $(basename "$KDIR") (${KERNEL_TOOLCHAIN[*]}; first run only, about 4 minutes on 2 cores)" >&2
fi
if [ ! -f "$KDIR/.config" ]; then
	mkdir -p "$KDIR"
	kmake KCONFIG_ALLCONFIG="$KCONFIG_FRAGMENT" allnoconfig >/dev/null
	# Kconfig drops what it cannot satisfy without a word: check every
	# line (the last one for a symbol a later fragment sets again).
	bad=0
	while IFS= read -r line; do
		grep -qx "$line" "$KDIR/.config" || { echo "build-kernel: not in .config: $line" >&2; bad=1; }
	done < <(sed -nE 's/^(CONFIG_[A-Za-z0-9_]+)=.*/\1 &/p; s/^# (CONFIG_[A-Za-z0-9_]+) is not set$/\1 &/p' "$KCONFIG_FRAGMENT" |
		awk '{ sym = $1; sub(/^[^ ]+ /, ""); last[sym] = $0; order[sym] = NR } END { for (s in last) print order[s], last[s] }' |
		sort -n | cut -d' ' -f2-)
	if [ $bad -ne 0 ]; then
		mv "$KDIR/.config" "$KDIR/.config.rejected"
		exit 1
	fi
fi
kmake rustavailable >/dev/null
kmake -j"$KBUILD_JOBS" Image modules modules_prepare >&2
# The initramfs packer: a host tool the kernel builds only for built-in
# initramfs sources, so build it directly.
if [ ! -x "$KDIR/usr/gen_init_cpio" ] || [ "$KSRC/usr/gen_init_cpio.c" -nt "$KDIR/usr/gen_init_cpio" ]; then
	mkdir -p "$KDIR/usr"
	clang -O2 -o "$KDIR/usr/gen_init_cpio" "$KSRC/usr/gen_init_cpio.c"
fi
echo "$KDIR"
