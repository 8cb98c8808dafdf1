#!/usr/bin/env bash
# Snapshot cost vs tree size: a btrfs snapshot is O(1) in the number of files. Measures, on a
# btrfs filesystem on a loop device, with a subvolume of SMALL (1 000) and LARGE (100 000)
# files:
#   - `backupctl run --here` of an rsync stage with snapshot = "btrfs" whose only source is
#     one file of the subvolume: the whole subvolume is snapshotted (ioctl), bind-mounted in a
#     private namespace, the file copied, the snapshot deleted;
#   - the same stage without snapshot (baseline: process start, rsync);
#   - `btrfs subvolume snapshot -r` + `btrfs subvolume delete` (spawning btrfs-progs instead
#     of the ioctls).
# Needs root, btrfs-progs, hyperfine. LARGE=10000 for a quicker run.
set -euo pipefail
SMALL=${SMALL:-1000}
LARGE=${LARGE:-100000}
BACKUPCTL=${BACKUPCTL:-$PWD/target/release/backupctl}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-snapshot.XXXXXX")
device=
cleanup() {
	umount -l "$work/mnt" 2>/dev/null || true
	if [[ -n $device ]]; then losetup -d "$device" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
truncate -s 2G "$work/image"
mkfs.btrfs -q "$work/image"
device=$(losetup --find --show "$work/image")
mkdir "$work/mnt" && mount "$device" "$work/mnt"
for n in "$SMALL" "$LARGE"; do
	btrfs -q subvolume create "$work/mnt/tree$n"
	mkdir -p "$work/mnt/tree$n/d"
	seq -f "$work/mnt/tree$n/d/f%g" 1 "$n" | xargs touch
	echo one >"$work/mnt/tree$n/one.txt"
	for mode in btrfs none; do
		cat >"$work/$mode-$n.toml" <<TOML
[stage.copy]
kind = "rsync"
sources = ["$work/mnt/tree$n/one.txt"]
destination = "$work/dest"
snapshot = "$mode"
TOML
	done
done
sync
export STATE_DIRECTORY=$work/state/backupctl XDG_CACHE_HOME=$work/cache
run() { echo "$BACKUPCTL --user --config $work/$1.toml run --here"; }
hyperfine --warmup 3 --runs "${RUNS:-30}" -N --style basic \
	-n "no snapshot, $SMALL files" "$(run none-"$SMALL")" \
	-n "snapshot (ioctl), $SMALL files" "$(run btrfs-"$SMALL")" \
	-n "snapshot (ioctl), $LARGE files" "$(run btrfs-"$LARGE")" \
	-n "btrfs-progs snapshot+delete, $SMALL files" \
	"sh -c 'btrfs -q subvolume snapshot -r $work/mnt/tree$SMALL $work/mnt/s && btrfs -q subvolume delete $work/mnt/s'" \
	-n "btrfs-progs snapshot+delete, $LARGE files" \
	"sh -c 'btrfs -q subvolume snapshot -r $work/mnt/tree$LARGE $work/mnt/s && btrfs -q subvolume delete $work/mnt/s'" \
	2>&1 | grep -v "^ *Range\|^ *$"
