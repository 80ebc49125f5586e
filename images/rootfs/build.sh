#!/bin/bash
# Build the kvmbox rootfs: the initramfs's userland (busybox, the guest agent as /sbin/init, the legacy init
# script as /etc/kvmbox/init.sh) in a sparse ext4 image, made with `mkfs.ext4 -d` and fixed up with
# debugfs: no loop mount, no root needed. Boot it with root=/dev/vda (virtio-blk) and `rw` to write to it.
#
# usage: images/rootfs/build.sh OUT.ext4 [BUSYBOX [AGENT]]   (AGENT: default build/kvmbox-agent)
# environment: ROOTFS_SIZE (default 256M: room for what sandboxes write; the file is sparse),
#              SOURCE_DATE_EPOCH (file times, default 0)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUT.ext4 [BUSYBOX [AGENT]]}
BUSYBOX=${2:-/bin/busybox}
AGENT=${3:-$HERE/../../build/kvmbox-agent}
SIZE=${ROOTFS_SIZE:-256M}
export PATH=$PATH:/usr/sbin:/sbin
die() { echo "rootfs: $*" >&2; exit 1; }
for t in mkfs.ext4 debugfs e2fsck; do
	command -v $t >/dev/null || die "$t not found: install Debian's e2fsprogs (apt-get install e2fsprogs)"
done
command -v python3 >/dev/null || die "python3 not found: install Debian's python3 (apt-get install python3)"

stage=$OUT.d
fixup=$OUT.debugfs
tmp=$OUT.tmp
python3 "$HERE/../initramfs/mkimage.py" rootfs --busybox "$BUSYBOX" --agent "$AGENT" \
	--init "$HERE/../initramfs/init" --stage "$stage" -o "$fixup"
rm -f "$tmp"
# Fixed UUID and directory hash seed (file times come from the stage; inode ctimes are the build time).
uuid=6b766d62-6f78-4000-8000-726f6f746673
mkfs.ext4 -q -F -b 4096 -L kvmbox-root -U "$uuid" -E "root_owner=0:0,hash_seed=$uuid" -d "$stage" \
	"$tmp" "$SIZE" >/dev/null || die "mkfs.ext4 -d $stage failed"
# Device nodes, modes and owners of every inode (mkfs.ext4 -d copies the staged owners).
debugfs -w -f "$fixup" "$tmp" >/dev/null 2>"$tmp.log" || { cat "$tmp.log" >&2; die "debugfs fixup failed"; }
if grep -v '^debugfs ' "$tmp.log" | grep -q .; then
	cat "$tmp.log" >&2
	die "debugfs reported errors"
fi
e2fsck -fn "$tmp" >"$tmp.log" 2>&1 || { cat "$tmp.log" >&2; die "e2fsck -fn found errors"; }
rm -rf "$tmp.log" "$stage" "$fixup"
mv "$tmp" "$OUT"
echo "rootfs: $OUT ($SIZE sparse, $(du -k "$OUT" | cut -f1) KiB used)"
