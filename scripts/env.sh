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
# The kernel profile: which fragments of kernel/ make its config (on top of
# allnoconfig), and so which kernel the scripts build and boot.
#   test        make check, make run: the base plus KUnit, vgem and fault
#               injection
#   debug       make check-debug: plus KASAN, lockdep, kmemleak, ...
#   bench       make bench: the base plus KUnit and kprobes
#   prod-clang  product kernel, clang: kCFI, no KUnit (plus test.config)
#   prod-gcc    product kernel, GCC: MODVERSIONS + GENDWARFKSYMS, debug
#               info, no KUnit (plus test.config)
#   dropin      make check-dropin, make check-clients: the upstream system
#               heap a module left unloaded, this one named `system`; what
#               Debian's libcamera and GStreamer need (plus test.config)
# Profiles with kunit.config get the module's test build (the KUnit suite
# compiled in, RDH_KUNIT=y); the others the production module.
RDH_PROFILE=${RDH_PROFILE:-test}
# The module's KUnit suites (#[kunit_tests(...)] in the driver's files and
# tests/kunit/): every one must report in a boot of the test build.
KUNIT_SUITES=(rust_dmabuf_heap_ownership rust_dmabuf_heap_pages rust_dmabuf_heap_demand rust_dmabuf_heap_pool
	rust_dmabuf_heap_buffer rust_dmabuf_heap_exporter rust_dmabuf_heap_fences
	rust_dmabuf_heap_maintenance)
# Runner arguments that name them: kunit_suite_args --expect-suite
kunit_suite_args() { for s in "${KUNIT_SUITES[@]}"; do printf '%s %s ' "$1" "$s"; done; }
case "$RDH_PROFILE" in
test) profile_fragments="kunit test" ;;
debug) profile_fragments="kunit test debug" ;;
bench) profile_fragments="kunit bench" ;;
prod-clang) profile_fragments="test prod-clang" ;;
prod-gcc) profile_fragments="test prod-gcc" ;;
dropin) profile_fragments="test dropin" ;;
*)
	echo "unknown RDH_PROFILE=$RDH_PROFILE" >&2
	exit 2
	;;
esac
case " $profile_fragments " in
*" kunit "*) RDH_KUNIT=y ;;
*) RDH_KUNIT=n ;;
esac
mkdir -p "$CACHE_ROOT/fragments"
KCONFIG_FRAGMENT=$CACHE_ROOT/fragments/$RDH_PROFILE-$(cd "$REPO_ROOT/kernel" &&
	cat qemu-arm64.config $(printf '%s.config ' $profile_fragments) | sha256sum | cut -c1-12).config
(cd "$REPO_ROOT/kernel" && cat qemu-arm64.config $(printf '%s.config ' $profile_fragments)) >"$KCONFIG_FRAGMENT"
# The compiler a profile's kernel is built with (a `# rdh-toolchain: gcc`
# line in a fragment); modules follow the tree they are built against.
if grep -q '^# rdh-toolchain: gcc' "$KCONFIG_FRAGMENT"; then
	KERNEL_TOOLCHAIN=(CROSS_COMPILE=aarch64-linux-gnu-)
else
	KERNEL_TOOLCHAIN=(LLVM=1)
fi
# The make variables that select the compiler a kernel tree was built with.
tree_toolchain() {
	if grep -qx CONFIG_CC_IS_CLANG=y "$1/.config"; then
		echo LLVM=1
	else
		echo CROSS_COMPILE=${CROSS_COMPILE:-aarch64-linux-gnu-}
	fi
}
# Kernel build directory name: Debian kernel version, profile and fragment
# hash (the toolchain line is part of the fragments).
kernel_key() {
	local v
	v=$(cat "$KSRC/.debian-version" 2>/dev/null || echo "$KVER")
	echo "$v-$(basename "$KCONFIG_FRAGMENT" .config)"
}
KBUILD_JOBS=${KBUILD_JOBS:-3}
