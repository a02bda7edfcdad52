#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Installs everything the build needs on a fresh Debian 12 machine and fetches
# the kernel source. Idempotent: a second run only checks and exits.
# Never touches the machine's apt sources: other suites are read through a
# private apt configuration under the cache directory.
set -euo pipefail
. "$(dirname "$0")/env.sh"

log() { printf 'setup: %s\n' "$*"; }

# --- Debian 12 packages ------------------------------------------------------
PKGS=(clang-19 lld-19 llvm-19 libclang-19-dev bc flex bison libelf-dev
	libssl-dev cpio kmod make python3 xz-utils
	# The upstream dmabuf-heaps selftest is C, built static for the guest.
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross
	# fdtget/fdtput: the non-coherent DMA topology edits QEMU's device tree.
	device-tree-compiler
	# gendwarfksyms (MODVERSIONS for Rust, the prod-gcc kernel) needs dwarf.h.
	libdw-dev
	# make check-intree: the series is applied with patch(1) and checked by
	# the kernel's checkpatch.pl (Perl with its standard modules).
	patch perl
	# Libraries of qemu-system-arm 10.0 from bookworm-backports (what ldd
	# resolves for qemu-system-aarch64 on Debian 12).
	libaio1 libbpf1 libcapstone4 libdaxctl1 libfdt1 libfuse3-3
	libglib2.0-0 libgmp10 libgnutls30 libhogweed6 libibverbs1
	libjpeg62-turbo libndctl6 libnettle8 libnl-3-200 libnl-route-3-200
	libnuma1 libpixman-1-0 libpmem1 libpng16-16 librdmacm1 libsasl2-2
	libseccomp2 libslirp0 libudev1 liburing2 libvdeplug2 libzstd1 zlib1g)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust --------------------------------------------------------------------
rustup component list --installed | grep -q '^rust-src' ||
	rustup component add rust-src
rustup target list --installed | grep -q '^aarch64-unknown-linux-musl$' ||
	rustup target add aarch64-unknown-linux-musl
if ! "$TOOLS/bin/bindgen" --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	log "cargo install bindgen-cli $BINDGEN_VERSION"
	cargo install -q bindgen-cli --locked --version "$BINDGEN_VERSION" --root "$TOOLS"
fi

# --- Private apt view of other Debian suites ---------------------------------
APT=$CACHE_ROOT/apt
apt_private() {
	apt-get -q -o Dir::Etc::SourceList="$APT/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache" \
		-o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}
apt_ready=
apt_update() {
	[ -n "$apt_ready" ] && return
	mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
	cat >"$APT/sources.list" <<LIST
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian trixie-backports main
deb http://deb.debian.org/debian sid main
LIST
	apt_private update >/dev/null
	apt_ready=1
}
# fetch_deb PKG SUITE DIR: unpack the newest PKG of SUITE into DIR and record
# its version.
fetch_deb() {
	local pkg=$1 suite=$2 dir=$3 tmp
	apt_update
	tmp=$(mktemp -d)
	(cd "$tmp" && apt_private download "$pkg/$suite" >/dev/null)
	mkdir -p "$dir"
	dpkg-deb -x "$tmp"/*.deb "$dir"
	dpkg-deb -f "$tmp"/*.deb Version >"$dir/.version-$pkg"
	rm -rf "$tmp"
}

# --- QEMU 10.0 (bookworm's 7.2 conflicts with the image's qemu-utils 10) -------
if [ ! -x "$QEMU" ]; then
	log "fetching qemu-system-arm from bookworm-backports"
	rm -rf "$QEMU_DIR"
	fetch_deb qemu-system-arm bookworm-backports "$QEMU_DIR"
	fetch_deb qemu-system-data bookworm-backports "$QEMU_DIR"
fi
if ! "$QEMU" --version >/dev/null 2>&1; then
	log "qemu-system-aarch64 does not start; missing libraries:"
	ldd "$QEMU" | grep 'not found' || true
	exit 1
fi

# --- Kernel source -------------------------------------------------------------
if [ ! -f "$KSRC/Makefile" ]; then
	log "fetching linux-source-$KVER from $KSUITE"
	pkgdir=$SRC_ROOT/pkg-$KVER
	rm -rf "$pkgdir" "$KSRC"
	fetch_deb "linux-source-$KVER" "$KSUITE" "$pkgdir"
	mkdir -p "$KSRC"
	tar -xf "$pkgdir"/usr/src/linux-source-"$KVER".tar.* -C "$KSRC" --strip-components=1
	cp "$pkgdir/.version-linux-source-$KVER" "$KSRC/.debian-version"
	rm -rf "$pkgdir"
fi
log "ready: kernel $(cat "$KSRC/.debian-version") in $KSRC, $("$QEMU" --version | head -1)"
