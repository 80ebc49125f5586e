#!/bin/bash
# Build the kvmbox guest kernel from Debian's linux-source-6.12 with our config fragment, cached under
# $KVMBOX_CACHE/kernel/<hash of every input>/ so a rebuild happens only when an input changes.
#
# usage: images/kernel/build.sh OUTDIR
#   OUTDIR receives vmlinux (uncompressed ELF with the PVH note) and bzImage, copied from the cache.
# environment:
#   KVMBOX_CACHE           cache root (default /var/cache/kvmbox)
#   KVMBOX_KERNEL_SRC      source tarball (default /usr/src/linux-source-6.12.tar.xz, from linux-source-6.12)
#   KVMBOX_KERNEL_PATCHES  extra patches (space separated, applied with patch -p1 in that order)
#   KVMBOX_KERNEL_CONFIG   extra config fragments (space separated, merged after guest.config)
#   KVMBOX_KERNEL_PVM      auto (default: add the PVM native shim when /sys/module/kvm_pvm exists), 1 or 0
#   JOBS                   make -j (default: nproc)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUTDIR=${1:?usage: $0 OUTDIR}
CACHE=${KVMBOX_CACHE:-/var/cache/kvmbox}
SRC=${KVMBOX_KERNEL_SRC:-/usr/src/linux-source-6.12.tar.xz}
JOBS=${JOBS:-$(nproc)}
read -r -a patches <<< "${KVMBOX_KERNEL_PATCHES:-}"
read -r -a configs <<< "${KVMBOX_KERNEL_CONFIG:-}"

pvm=${KVMBOX_KERNEL_PVM:-auto}
if [ "$pvm" = auto ]; then
	if [ -d /sys/module/kvm_pvm ]; then pvm=1; else pvm=0; fi
fi
if [ "$pvm" = 1 ]; then
	patches=("$HERE/pvm/linux-6.12-pvm-native-shim.patch" "${patches[@]}")
	configs=("${configs[@]}" "$HERE/pvm/shim.config")
fi

die() { echo "kernel build: $*" >&2; exit 1; }
[ -r "$SRC" ] || die "kernel source $SRC is missing: install Debian's linux-source-6.12 (apt-get install linux-source-6.12) or set KVMBOX_KERNEL_SRC"
for f in "${patches[@]}" "${configs[@]}"; do
	[ -r "$f" ] || die "input $f is missing or unreadable: fix KVMBOX_KERNEL_PATCHES / KVMBOX_KERNEL_CONFIG"
done

# The key covers everything that changes the output: the source (by its size and mtime as installed by
# dpkg, plus its name), this script, the config fragments and the patches, in order.
key=$( {
	# contents only, never paths: a fresh clone elsewhere must hit the same cache entry
	stat -c '%s %Y' "$SRC"; basename "$SRC"
	sha256sum < "$0"
	sha256sum < "$HERE/guest.config"
	for f in "${patches[@]}"; do echo "patch"; sha256sum < "$f"; done
	for f in "${configs[@]}"; do echo "config"; sha256sum < "$f"; done
} | sha256sum | cut -c1-16)
dir="$CACHE/kernel/$key"

if [ ! -f "$dir/vmlinux" ]; then
	echo "kernel build: building $key (pvm shim: $pvm; first build takes 4-8 minutes on 2 cores)"
	mkdir -p "$CACHE/kernel"
	work=$(mktemp -d "$CACHE/kernel/.build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	echo "kernel build: [1/4] unpacking $SRC"
	tar -xaf "$SRC" -C "$work"
	tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
	for p in "${patches[@]}"; do
		echo "kernel build: [2/4] applying $(basename "$p")"
		patch -s -p1 -d "$tree" < "$p" || die "patch $p does not apply to $SRC"
	done
	echo "kernel build: [3/4] configuring (tinyconfig + guest.config ${configs[*]})"
	make -s -C "$tree" ARCH=x86_64 tinyconfig >/dev/null
	(cd "$tree" && ./scripts/kconfig/merge_config.sh -m .config "$HERE/guest.config" "${configs[@]}" >/dev/null)
	make -s -C "$tree" ARCH=x86_64 olddefconfig >/dev/null
	if [ "$pvm" = 1 ]; then
		grep -q '^CONFIG_PVM_NATIVE_SHIM=y' "$tree/.config" || die "CONFIG_PVM_NATIVE_SHIM did not survive olddefconfig"
	fi
	echo "kernel build: [4/4] compiling with -j$JOBS "
	start=$(date +%s)
	# A progress line every 30 s: the compile is long and silent otherwise.
	make -C "$tree" ARCH=x86_64 -j"$JOBS" vmlinux bzImage > "$work/make.log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		el=$(( $(date +%s) - start ))
		if [ $((el % 30)) -lt 5 ]; then
			echo "kernel build: ... ${el}s, $(grep -c '^  CC' "$work/make.log" || true) files compiled"
		fi
	done
	if ! wait "$pid"; then
		cp "$work/make.log" "$CACHE/kernel/last-failure.log"
		tail -30 "$work/make.log" >&2
		die "compile failed; the full log is $CACHE/kernel/last-failure.log"
	fi
	mkdir -p "$work/out"
	cp "$tree/vmlinux" "$tree/arch/x86/boot/bzImage" "$tree/.config" "$work/out/"
	rm -rf "$dir"
	mv "$work/out" "$dir"
	echo "kernel build: done in $(( $(date +%s) - start ))s"
fi
mkdir -p "$OUTDIR"
cp "$dir/vmlinux" "$dir/bzImage" "$OUTDIR/"
cp "$dir/.config" "$OUTDIR/kernel.config"
echo "kernel: $OUTDIR/vmlinux (cache $dir)"
