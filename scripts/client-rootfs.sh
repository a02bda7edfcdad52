#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Prepares, from Debian sid's arm64 packages (unmodified, nothing rebuilt),
# the files an arm64 guest needs to run libcamera's `cam` and GStreamer's
# `gst-launch-1.0` with `libcamerasrc` on libcamera's virtual pipeline: the
# programs, the two plugins, libSDL3 (which sdl2-compat dlopen()s), the
# dynamic loader, every library their NEEDED entries name, and the virtual
# camera's configuration (guest/clients/virtual.yaml).
# Only the packages that provide a needed file are fetched: starting from a
# few seed packages, each NEEDED soname left unresolved is looked for in the
# Depends of the package whose ELF file needs it (best name match first).
# Fails if a soname stays unresolved.
# Prints on its last line a gen_init_cpio list of those files (only /usr/...,
# /lib -> usr/lib and their parent directories: no /init, /dev, /proc, /sys or
# /bin) to append to the guest's initramfs list. Cached: packages under
# $CACHE_ROOT/apt-arm64 (lists refreshed after 7 days), the result under
# $CACHE_ROOT/clients/<key>; a second run downloads nothing.
set -euo pipefail
. "$(dirname "$0")/env.sh"

log() { printf 'client-rootfs: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

SCRIPT=$REPO_ROOT/scripts/client-rootfs.sh
VIRTUAL_YAML=$REPO_ROOT/guest/clients/virtual.yaml
MULTIARCH=aarch64-linux-gnu
# The packages unpacked first: the programs, the plugins, SDL3 and the loader.
SEEDS=(libc6 libcamera-tools libcamera0.7 gstreamer1.0-tools
	gstreamer1.0-libcamera libgstreamer1.0-0 libsdl3-0)
# The files shipped with their NEEDED closure. gst-inspect-1.0 and the plugin
# scanner add no library; libSDL3 is dlopen()ed by sdl2-compat (libSDL2).
ROOTS=(/usr/bin/cam /usr/bin/gst-launch-1.0 /usr/bin/gst-inspect-1.0
	/usr/lib/"$MULTIARCH"/gstreamer-1.0/libgstlibcamera.so
	/usr/lib/"$MULTIARCH"/gstreamer-1.0/libgstcoreelements.so
	/usr/lib/"$MULTIARCH"/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner
	/usr/lib/"$MULTIARCH"/libSDL3.so.0
	/lib/ld-linux-aarch64.so.1)
# glibc's built-in search path (Debian's multiarch directories first).
DEFAULT_LIBDIRS=(/lib/"$MULTIARCH" /usr/lib/"$MULTIARCH" /lib /usr/lib)
LISTS_MAX_AGE_DAYS=7

for r in readelf llvm-readelf aarch64-linux-gnu-readelf; do
	command -v "$r" >/dev/null && READELF=$r && break
done
[ -n "${READELF:-}" ] || die "no readelf (binutils or llvm) found"

# --- Private apt view of sid arm64 -------------------------------------------
APT=$CACHE_ROOT/apt-arm64
DEBS=$APT/debs
UNPACKED=$APT/unpacked
CLIENTS=$CACHE_ROOT/clients
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$DEBS" "$UNPACKED" "$CLIENTS/by-lists"
exec 9>"$CLIENTS/.lock"
flock 9

apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
	-o Dir::State::status=/dev/null
	-o Dir::Etc::SourceList="$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache"
	-o Dir::Cache::pkgcache=pkgcache.bin -o Dir::Cache::srcpkgcache=
	-o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt_get() { apt-get -q "${apt_opts[@]}" "$@"; }
apt_cache() { apt-cache "${apt_opts[@]}" "$@"; }

# Only the Packages index: no translations, no DEP-11 metadata.
sources='deb [target=Packages] http://deb.debian.org/debian sid main'
if [ "$(cat "$APT/sources.list" 2>/dev/null)" != "$sources" ]; then
	echo "$sources" >"$APT/sources.list"
	rm -f "$APT/lists.stamp"
fi
if [ -z "$(find "$APT/lists.stamp" -mtime -"$LISTS_MAX_AGE_DAYS" 2>/dev/null)" ]; then
	log "apt-get update (sid arm64)"
	if apt_get update >/dev/null; then
		touch "$APT/lists.stamp"
	elif [ -n "$(find "$APT/lists" -maxdepth 1 -name '*_Packages*')" ]; then
		log "warning: apt-get update failed, going on with the old lists"
	else
		die "apt-get update failed"
	fi
fi
mapfile -t inrelease < <(find "$APT/lists" -maxdepth 1 -name '*_InRelease' | sort)
((${#inrelease[@]})) || die "no sid InRelease under $APT/lists"

# --- Fast path: these lists, this script and this YAML resolved before ---------
prekey=$(cat "$SCRIPT" "$VIRTUAL_YAML" "${inrelease[@]}" | sha256sum | cut -c1-16)
if [ -f "$CLIENTS/by-lists/$prekey" ]; then
	out=$CLIENTS/$(cat "$CLIENTS/by-lists/$prekey")
	if [ -f "$out/initramfs.list" ] && [ -d "$out/root" ]; then
		touch "$out"
		log "0 packages downloaded (cached result); shipped: $(cat "$out/summary.txt")"
		echo "$out/initramfs.list"
		exit 0
	fi
fi

# --- Package index: the files of the unpacked packages -----------------------
# TYPE[path] f (file), l (symlink) or d; LINK[path] a symlink's target;
# SRC[path] the unpacked file; OWNER[path] its package. Paths are those of
# the merged-/usr guest: /lib/... is indexed as /usr/lib/... behind the one
# symlink /lib -> usr/lib, which the list ships too.
declare -A TYPE=() LINK=() SRC=() OWNER=()
declare -A VER=() ARCH=() DEPS=() STAGED=() DOWNLOADED=()
TYPE[/lib]=l
LINK[/lib]=usr/lib
dl_new=0
dl_cached=0

deb_name() { echo "${1}_${VER[$1]//:/%3a}_${ARCH[$1]}"; }

# pkg_info PKG...: candidate version and architecture of each PKG.
pkg_info() {
	local p='' k v
	while IFS=': ' read -r k v; do
		case $k in
		Package) p=$v ;;
		Version) VER[$p]=$v ;;
		Architecture) ARCH[$p]=$v ;;
		esac
	done < <(apt_cache show --no-all-versions "$@" | grep -E '^(Package|Version|Architecture):')
	for p in "$@"; do
		[ -n "${VER[$p]-}" ] || die "no sid arm64 candidate for $p"
	done
}

# pkg_deps PKG...: Depends and Pre-Depends of each PKG, alternatives and the
# providers of virtual packages included.
pkg_deps() {
	local line p='' name
	while IFS= read -r line; do
		case $line in
		"    "*) name=${line#"    "} ;;
		"  "*Depends:*) name=${line#*Depends: } ;;
		" "*) continue ;;
		*)
			p=$line
			DEPS[$p]=
			continue
			;;
		esac
		case $name in "<"*) continue ;; esac
		DEPS[$p]+=" $name"
	done < <(apt_cache depends --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances "$@")
}

# index_dir PKG DIR: add DIR's tree (PKG's unpacked files) to the index.
index_dir() {
	local pkg=$1 dir=$2 t rel target p
	while IFS=$'\t' read -r t rel target; do
		p=/$rel
		case $p in /lib/* | /lib) p=/usr$p ;; /bin/* | /sbin/*) p=/usr$p ;; esac
		[ -n "${TYPE[$p]-}" ] && continue
		TYPE[$p]=$t
		SRC[$p]=$dir/$rel
		OWNER[$p]=$pkg
		if [ "$t" = l ]; then LINK[$p]=$target; fi
	done < <(find "$dir" -mindepth 1 -printf '%y\t%P\t%l\n')
}

# stage PKG...: download (unless cached), unpack (unless cached) and index
# each PKG; read its dependencies.
stage() {
	local p name fetch=()
	pkg_info "$@"
	for p in "$@"; do
		name=$(deb_name "$p")
		if [ -f "$DEBS/$name.deb" ]; then
			dl_cached=$((dl_cached + 1))
		else
			fetch+=("$p=${VER[$p]}")
			DOWNLOADED[$p]=1
		fi
	done
	if ((${#fetch[@]})); then
		log "downloading ${fetch[*]}"
		(cd "$DEBS" && apt_get -qq download "${fetch[@]}" >/dev/null)
		dl_new=$((dl_new + ${#fetch[@]}))
	fi
	for p in "$@"; do
		name=$(deb_name "$p")
		[ -f "$DEBS/$name.deb" ] || die "apt-get download $p=${VER[$p]} left no $name.deb"
		if [ ! -f "$UNPACKED/$name.done" ]; then
			rm -rf "${UNPACKED:?}/$name"
			dpkg-deb -x "$DEBS/$name.deb" "$UNPACKED/$name"
			touch "$UNPACKED/$name.done"
		fi
		index_dir "$p" "$UNPACKED/$name"
		STAGED[$p]=1
	done
	pkg_deps "$@"
}

# --- Closure of the shipped files ----------------------------------------------
# resolve PATH: follow PATH through the index's symlinks (any component);
# REPLY is the path reached (a file or directory in the index), TRAVERSED the
# symlinks passed. Returns 1 if PATH leads nowhere.
TRAVERSED=()
resolve() {
	local rest=${1#/} cur='' comp hops=0 t
	TRAVERSED=()
	while [ -n "$rest" ]; do
		comp=${rest%%/*}
		if [[ $rest == */* ]]; then rest=${rest#*/}; else rest=; fi
		case $comp in
		'' | .) continue ;;
		..)
			cur=${cur%/*}
			continue
			;;
		esac
		cur=$cur/$comp
		[ -n "${TYPE[$cur]-}" ] || return 1
		if [ "${TYPE[$cur]}" = l ]; then
			((++hops <= 40)) || return 1
			TRAVERSED+=("$cur")
			t=${LINK[$cur]}
			case $t in /*) cur= ;; *) cur=${cur%/*} ;; esac
			rest=${t#/}${rest:+/$rest}
		fi
	done
	REPLY=$cur
	[ -n "$cur" ] && [ -n "${TYPE[$cur]-}" ]
}

# resolve_file PATH: resolve PATH to a regular file.
resolve_file() { resolve "$1" && [ "${TYPE[$REPLY]}" = f ]; }

# ELF dynamic information, read once per file: NEEDED sonames, the search
# path (RUNPATH, else RPATH) and the program interpreter.
declare -A ELF_NEEDED=() ELF_PATH=() ELF_INTERP=() IS_ELF=()
elf_info() {
	local p=$1 src=${SRC[$1]} line needed='' rpath='' runpath='' interp=''
	[ -n "${IS_ELF[$p]-}" ] && return
	if [ "$(head -c4 "$src" | od -An -c | tr -d ' ')" != '177ELF' ]; then
		IS_ELF[$p]=n
		return
	fi
	IS_ELF[$p]=y
	while IFS= read -r line; do
		case $line in
		*"(NEEDED)"*) line=${line#*\[} && needed+=" ${line%]*}" ;;
		*"(RUNPATH)"*) line=${line#*\[} && runpath=${line%]*} ;;
		*"(RPATH)"*) line=${line#*\[} && rpath=${line%]*} ;;
		*"program interpreter:"*) line=${line#*: } && interp=${line%]*} ;;
		esac
	done < <(LC_ALL=C "$READELF" -dlW "$src" 2>/dev/null)
	ELF_NEEDED[$p]=$needed
	ELF_PATH[$p]=${runpath:-$rpath}
	ELF_INTERP[$p]=$interp
}

# ship PATH: ship the symlinks just traversed and PATH; queue new files.
declare -A SHIP=()
QUEUE=()
ship() {
	local s
	for s in "${TRAVERSED[@]}"; do SHIP[$s]=1; done
	if [ -z "${SHIP[$1]-}" ]; then
		SHIP[$1]=1
		QUEUE+=("$1")
	fi
}

# find_lib ELF SONAME: resolve SONAME as the loader would for ELF.
find_lib() {
	local elf=$1 so=$2 d dirs=() origin
	if [[ $so == */* ]]; then
		resolve_file "$so"
		return
	fi
	origin=${elf%/*}
	IFS=: read -ra dirs <<<"${ELF_PATH[$elf]}"
	for d in "${dirs[@]}" "${DEFAULT_LIBDIRS[@]}"; do
		d=${d//\$\{ORIGIN\}/$origin}
		d=${d//\$ORIGIN/$origin}
		resolve_file "$d/$so" && return 0
	done
	return 1
}

# closure: SHIP = the roots and everything they need; UNRESOLVED[soname] =
# the packages whose ELF files need it, NEEDED_BY[soname] one such file.
declare -A UNRESOLVED=() NEEDED_BY=() ATTEMPTS=()
closure() {
	local r p so i=0
	SHIP=()
	QUEUE=()
	UNRESOLVED=()
	NEEDED_BY=()
	for r in "${ROOTS[@]}"; do
		resolve_file "$r" || die "$r is in none of the seed packages (${SEEDS[*]})"
		ship "$REPLY"
	done
	SHIP[$VIRTUAL_DEST]=1
	while ((i < ${#QUEUE[@]})); do
		p=${QUEUE[i]}
		i=$((i + 1))
		elf_info "$p"
		[ "${IS_ELF[$p]}" = y ] || continue
		if [ -n "${ELF_INTERP[$p]}" ]; then
			resolve_file "${ELF_INTERP[$p]}" ||
				die "${OWNER[$p]}: $p: no interpreter ${ELF_INTERP[$p]}"
			ship "$REPLY"
		fi
		for so in ${ELF_NEEDED[$p]}; do
			if find_lib "$p" "$so"; then
				ship "$REPLY"
			else
				UNRESOLVED[$so]+=" ${OWNER[$p]}"
				NEEDED_BY[$so]=$p
			fi
		done
	done
}

# best_candidate SONAME PKG...: the unstaged package among PKG whose name is
# closest to SONAME (longest common prefix once "lib", the .so suffix and
# punctuation are dropped; shorter names first on a tie), in REPLY.
best_candidate() {
	local so=${1%%.so*} c n best='' bestn=-1 a
	shift
	so=${so,,}
	so=${so#lib}
	so=${so//[^a-z0-9]/}
	for c in "$@"; do
		[ -n "${STAGED[$c]-}" ] && continue
		a=${c,,}
		a=${a#lib}
		a=${a//[^a-z0-9]/}
		n=0
		while ((n < ${#a} && n < ${#so})) && [ "${a:n:1}" = "${so:n:1}" ]; do
			n=$((n + 1))
		done
		if ((n > bestn)) || { ((n == bestn)) && ((${#c} < ${#best})); }; then
			best=$c
			bestn=$n
		fi
	done
	REPLY=$best
	[ -n "$best" ]
}

VIRTUAL_DEST=/usr/share/libcamera/pipeline/virtual/virtual.yaml
TYPE[$VIRTUAL_DEST]=f
SRC[$VIRTUAL_DEST]=$VIRTUAL_YAML
OWNER[$VIRTUAL_DEST]=

log "resolving the NEEDED closure from ${SEEDS[*]}"
stage "${SEEDS[@]}"
while :; do
	closure
	((${#UNRESOLVED[@]})) || break
	declare -A want=()
	for so in "${!UNRESOLVED[@]}"; do
		ATTEMPTS[$so]=$((${ATTEMPTS[$so]-0} + 1))
		((ATTEMPTS[$so] <= 4)) ||
			die "$so (NEEDED by ${NEEDED_BY[$so]} of ${OWNER[${NEEDED_BY[$so]}]}) is in none of the 4 packages tried"
		cands=()
		for p in ${UNRESOLVED[$so]}; do
			# shellcheck disable=SC2206 # package names: no glob characters
			cands+=(${DEPS[$p]-})
		done
		if ! best_candidate "$so" "${cands[@]}"; then
			# Not among the requesting packages' Depends: any staged
			# package's.
			cands=()
			for p in "${!STAGED[@]}"; do
				# shellcheck disable=SC2206 # package names
				cands+=(${DEPS[$p]-})
			done
			best_candidate "$so" "${cands[@]}" ||
				die "$so (NEEDED by ${NEEDED_BY[$so]} of ${OWNER[${NEEDED_BY[$so]}]}) is in no package the staged ones depend on"
		fi
		want[$REPLY]=1
	done
	stage "${!want[@]}"
	unset want
done

# --- Output ----------------------------------------------------------------------
declare -A USED=()
for p in "${!SHIP[@]}"; do
	if [ -n "${OWNER[$p]-}" ]; then USED[${OWNER[$p]}]=1; fi
done
packages=$(for p in "${!USED[@]}"; do echo "$p=${VER[$p]}"; done | sort)
key=$( (
	echo "$packages"
	sha256sum <"$SCRIPT"
	sha256sum <"$VIRTUAL_YAML"
) | sha256sum | cut -c1-16)
out=$CLIENTS/$key
if [ ! -f "$out/initramfs.list" ]; then
	tmp=$out.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp/root"
	root=$out/root
	declare -A DIRS=()
	for p in "${!SHIP[@]}"; do
		d=${p%/*}
		while [ -n "$d" ]; do
			DIRS[$d]=1
			d=${d%/*}
		done
	done
	{
		for d in "${!DIRS[@]}"; do echo "d $d"; done
		for p in "${!SHIP[@]}"; do echo "${TYPE[$p]} $p"; done
	} | LC_ALL=C sort -k2,2 | while read -r t p; do
		case $t in
		d)
			mkdir -p "$tmp/root$p"
			echo "dir $p 0755 0 0"
			;;
		l)
			ln -s "${LINK[$p]}" "$tmp/root$p"
			echo "slink $p ${LINK[$p]} 0777 0 0"
			;;
		f)
			cp "${SRC[$p]}" "$tmp/root$p"
			mode=$(stat -c %a "${SRC[$p]}")
			chmod "$mode" "$tmp/root$p"
			printf 'file %s %s 0%s 0 0\n' "$p" "$root$p" "$mode"
			;;
		esac
	done >"$tmp/initramfs.list"
	echo "$packages" >"$tmp/packages.txt"
	files=$(find "$tmp/root" -type f | wc -l)
	bytes=$(find "$tmp/root" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
	printf '%d files, %s MB from %d packages (%s)\n' "$files" \
		"$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')" \
		"$(echo "$packages" | wc -l)" "$key" >"$tmp/summary.txt"
	rm -rf "$out"
	mv "$tmp" "$out"
fi
touch "$out"
echo "$key" >"$CLIENTS/by-lists/$prekey"

# Forget what this run did not use: other versions' debs and unpacked trees,
# and results older than the lists' lifetime.
declare -A KEEP=()
for p in "${!STAGED[@]}"; do KEEP[$(deb_name "$p")]=1; done
for f in "$DEBS"/*.deb "$UNPACKED"/*.done; do
	[ -e "$f" ] || continue
	n=${f##*/}
	n=${n%.*}
	[ -n "${KEEP[$n]-}" ] || rm -rf "$f" "${UNPACKED:?}/$n"
done
find "$CLIENTS" -mindepth 1 -maxdepth 1 -type d -name '????????????????' \
	-mtime +"$LISTS_MAX_AGE_DAYS" -exec rm -rf {} +
find "$CLIENTS/by-lists" -type f -mtime +"$LISTS_MAX_AGE_DAYS" -delete

vain=0
for p in "${!DOWNLOADED[@]}"; do [ -n "${USED[$p]-}" ] || vain=$((vain + 1)); done
log "$dl_new packages downloaded ($vain of them unused), $dl_cached from the cache; shipped: $(cat "$out/summary.txt")"
echo "$out/initramfs.list"
