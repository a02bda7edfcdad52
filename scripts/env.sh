# SPDX-License-Identifier: GPL-2.0
# Shared settings for every script: sourced, never run.
# KVER selects the Debian kernel series (7.3 default, 7.2 supported).
KVER=${KVER:-7.3}
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/rust-dmabuf-heap
TOOLS=$CACHE_ROOT/tools
BINDGEN_VERSION=0.73.2
LLVM_BIN=/usr/lib/llvm-19/bin
export PATH="$TOOLS/bin:$LLVM_BIN:$HOME/.cargo/bin:$PATH"
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The Debian suite that carries linux-source-$KVER.
case "$KVER" in
7.3) KSUITE=trixie-backports ;;
7.2) KSUITE=sid ;;
*) KSUITE=${KSUITE:-sid} ;;
esac
SRC_ROOT=$CACHE_ROOT/src
# Source tree of the newest linux-source-$KVER the set-up fetched.
KSRC=$SRC_ROOT/linux-source-$KVER
QEMU_DIR=$TOOLS/qemu
QEMU=$QEMU_DIR/usr/bin/qemu-system-aarch64
# Kernel build directory, keyed by kernel version and config fragment hash.
# KCONFIG_EXTRA names more fragment files, appended to the base one.
# RDH_TEST_KERNEL=1 (make check, check-debug) adds kernel/test.config
# before them. (KCONFIG_EXTRA itself is left alone: children that inherit
# it source this file again.)
KCONFIG_FRAGMENT=$REPO_ROOT/kernel/qemu-arm64.config
extra_fragments=${KCONFIG_EXTRA:-}
if [ -n "${RDH_TEST_KERNEL:-}" ]; then
	extra_fragments="$REPO_ROOT/kernel/test.config $extra_fragments"
fi
if [ -n "${extra_fragments// /}" ]; then
	mkdir -p "$CACHE_ROOT/fragments"
	combined=$CACHE_ROOT/fragments/$(cat "$KCONFIG_FRAGMENT" $extra_fragments | sha256sum | cut -c1-12).config
	cat "$KCONFIG_FRAGMENT" $extra_fragments >"$combined"
	KCONFIG_FRAGMENT=$combined
fi
kernel_key() {
	local v
	v=$(cat "$KSRC/.debian-version" 2>/dev/null || echo "$KVER")
	echo "$v-$(sha256sum "$KCONFIG_FRAGMENT" | cut -c1-12)"
}
KBUILD_JOBS=${KBUILD_JOBS:-3}
