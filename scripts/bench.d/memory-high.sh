#!/usr/bin/env bash
# memory_high: a restic stage backing up a tree of BENCH_MEMHIGH_MB MiB in BENCH_MEMHIGH_FILES
# files, unlimited and then with `memory_high` at 60 % of restic's unlimited peak RSS, each
# into a fresh repository, as stage units under systemd. It runs in the qemu guest
# (scripts/guest/, systemd as PID 1 with cgroup v2), since memory_high needs the memory
# controller on the unified hierarchy, which the test sandbox's host does not have.
#
# Prints: each run's wall time (the run record's duration), the ratio limited/unlimited,
# restic's unlimited peak RSS (VmHWM, sampled), and what the cgroup reports of the limited
# run: memory.events `high` (times throttled) and memory.pressure's `some` total (seconds
# some task waited for memory), as the run record keeps them. The guest has no swap:
# restic's heap over memory_high cannot be swapped out, only page cache reclaimed, so the
# kernel throttles restic itself for what is left (the case of a Pi without swap).
#
# Environment: BENCH_MEMHIGH_MB (default 64; the issue's full size is 512),
# BENCH_MEMHIGH_FILES (default 2500; full: 20000), BACKUPCTL_BIN, BENCH_GUEST_TIMEOUT
# (seconds, default 3600).
set -euo pipefail

MB=${BENCH_MEMHIGH_MB:-64}
FILES=${BENCH_MEMHIGH_FILES:-2500}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
here=$(cd "$(dirname "$0")/.." && pwd)
for tool in restic python3 qemu-system-x86_64; do
	command -v "$tool" >/dev/null || { echo "memory-high bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "memory-high bench: no backupctl binary at $BIN" >&2; exit 1; }

# Under target/, not /tmp: the share must outlive nothing but this run, and /tmp is small.
share=$(mktemp -d "$here/../target/bench-memhigh.XXXXXX")
trap 'rm -rf "$share"' EXIT
cp "$BIN" "$share/backupctl"
cp "$(command -v restic)" "$share/restic"
echo "making a tree of $MB MiB in $FILES files"
python3 - "$share/tree" "$FILES" "$((MB << 20))" <<'PY'
import os, sys
root, count, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = total // count
for i in range(count):
    d = os.path.join(root, f"d{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        f.write(os.urandom(size))
PY
tar -C "$share" -cf "$share/tree.tar" tree
rm -rf "$share/tree"

cat >"$share/run" <<'GUEST'
set -euo pipefail
out=/mnt/host/out
w=/var/lib/bench
mkdir -p "$out" "$w"
install -m 0755 /mnt/host/restic /usr/local/bin/restic
tar -C "$w" -xf /mnt/host/tree.tar
echo "bench password" > "$w/password"
chmod 600 "$w/password"
export RESTIC_PASSWORD_FILE=$w/password
bc() { /mnt/host/backupctl --config "$w/config.toml" "$@"; }

# One run of the stage into a fresh repository; $1: extra config lines. Prints nothing; the
# run record is the last line of runs.jsonl.
run() {
	rm -rf "$w/repo" /var/cache/backupctl
	restic init --quiet --repo "$w/repo"
	cat > "$w/config.toml" <<TOML
[stage.bench]
kind = "restic"
repository = "$w/repo"
password_file = "$w/password"
paths = ["$w/tree"]
$1
TOML
	bc generate --output /run/systemd/system --binary /mnt/host/backupctl
	systemctl daemon-reload
	systemctl start backup-job.service
}

# restic's peak RSS: its VmHWM, sampled while the unlimited stage runs.
peak_of_restic() {
	local peak=0 pid hwm
	while sleep 0.1; do
		pid=$(pgrep -x restic | head -n 1) || { [[ -f $w/done ]] && break; continue; }
		hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
		[[ -n $hwm ]] && ((hwm > peak)) && peak=$hwm
	done
	echo "$peak"
}

run "" # warm-up: the tree into the page cache
rm -f "$w/done"
peak_of_restic > "$out/peak" &
sampler=$!
run ""
touch "$w/done"
wait "$sampler"
tail -n 1 /var/lib/backupctl/runs.jsonl > "$out/unlimited.json"
peak=$(cat "$out/peak")
limit=$((peak * 60 / 100))
echo "$limit" > "$out/limit"
run "memory_high = \"${limit}K\""
tail -n 1 /var/lib/backupctl/runs.jsonl > "$out/limited.json"
echo "GUEST DONE"
GUEST

"$here/guest/run" "$share" --timeout "${BENCH_GUEST_TIMEOUT:-3600}" || {
	cat "$share/out/log" 2>/dev/null
	exit 1
}
python3 - "$share/out" "$MB" "$FILES" <<'PY'
import json, os, sys
out, mb, files = sys.argv[1], sys.argv[2], sys.argv[3]
read = lambda name: open(os.path.join(out, name)).read().strip()
unlimited, limited = json.loads(read("unlimited.json")), json.loads(read("limited.json"))
peak, limit = int(read("peak")), int(read("limit"))
memory = limited.get("memory") or {}
print(f"\nmemory_high bench, {mb} MiB in {files} files (qemu guest, systemd PID 1, cgroup v2):")
print(f"  restic peak RSS unlimited: {peak / 1024:.1f} MiB; memory_high = {limit / 1024:.1f} MiB (60 %)")
print(f"  results: unlimited {unlimited['result']}, limited {limited['result']}")
print(f"  wall time: unlimited {unlimited['duration_secs']:.2f} s, limited {limited['duration_secs']:.2f} s, "
      f"ratio {limited['duration_secs'] / unlimited['duration_secs']:.3f}")
print(f"  throttled (limited run): memory.events high {memory.get('high_events', 'n/a')}, "
      f"memory.pressure some {memory.get('stalled_secs', 'n/a')} s, cgroup peak "
      f"{(memory.get('peak_bytes') or 0) / 2**20:.1f} MiB")
PY
