#!/usr/bin/env bash
# memory_high: a restic stage backing up a tree of BENCH_MEMHIGH_MB MiB in BENCH_MEMHIGH_FILES
# files, unlimited and then with `memory_high` at 60 % of restic's unlimited peak RSS, each
# into a fresh repository, as stage units under systemd. It runs in the qemu guest
# (scripts/guest/, systemd as PID 1 with cgroup v2), since memory_high needs the memory
# controller on the unified hierarchy, which the test sandbox's host does not have.
#
# Prints: each run's wall time (the run record's duration), the ratio limited/unlimited (and
# against the mean of it and a second unlimited run after the limited one, which shows a
# drift over the fixed order of the runs),
# restic's unlimited peak RSS (VmHWM, sampled), and what the cgroup reports of the limited
# run: memory.events `high` (times throttled) and memory.pressure's `some` total (seconds
# some task waited for memory), as the run record keeps them. The guest has no swap:
# restic's heap over memory_high cannot be swapped out, only page cache reclaimed, so the
# kernel throttles restic itself for what is left (the case of a Pi without swap).
#
# Every figure is kept as soon as it is known, in BENCH_MEMHIGH_OUT (default
# target/bench-memhigh-results.DATE): the guest writes each run's record, its phase times,
# load averages and cgroup samples to the 9p share the moment it has them, and a host loop
# copies them out every 15 s and rewrites summary.txt from whatever is there, so a late
# failure (a limited run that fails, a timeout) cannot lose the unlimited run's figures. The
# host's load average is sampled there too (host-loadavg): other work on the machine
# slows a TCG guest.
#
# Environment: BENCH_MEMHIGH_MB (default 64; the issue's full size is 512),
# BENCH_MEMHIGH_FILES (default 2500; full: 20000), BACKUPCTL_BIN, BENCH_GUEST_TIMEOUT
# (seconds, default 3600), BENCH_MEMHIGH_OUT.
#
# Other guests may run beside it (scripts/powercut): each boot has its own share (mktemp),
# its own copy-on-write root (snapshot=on), no network device, no port and no monitor.
set -euo pipefail

MB=${BENCH_MEMHIGH_MB:-64}
FILES=${BENCH_MEMHIGH_FILES:-2500}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
here=$(cd "$(dirname "$0")/.." && pwd)
for tool in restic python3 qemu-system-x86_64; do
	command -v "$tool" >/dev/null || { echo "memory-high bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "memory-high bench: no backupctl binary at $BIN" >&2; exit 1; }

results=${BENCH_MEMHIGH_OUT:-$here/../target/bench-memhigh-results.$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$here/../target" "$results"
# Under target/, not /tmp: /tmp is small. The share itself goes at the end; its out/ is
# copied to $results first.
share=$(mktemp -d "$here/../target/bench-memhigh.XXXXXX")

# Whatever the guest has written so far: the run records, phase times and samples, as one
# summary; missing figures are shown as such.
summarise() {
	python3 - "$results" "$MB" "$FILES" <<'PY'
import json, os, sys
out, mb, files = sys.argv[1], sys.argv[2], sys.argv[3]
def read(name):
    try:
        return open(os.path.join(out, name)).read().strip()
    except OSError:
        return None
def record(name):
    text = read(name)
    return json.loads(text) if text else None
unlimited, limited, again = record("unlimited.json"), record("limited.json"), record("unlimited-again.json")
peak, limit = read("peak"), read("limit")
lines = [f"memory_high bench, {mb} MiB in {files} files (qemu guest, systemd PID 1, cgroup v2):"]
if peak:
    lines.append(f"  restic peak RSS unlimited (VmHWM): {int(peak) / 1024:.1f} MiB")
if limit:
    lines.append(f"  memory_high = {limit}K = {int(limit) / 1024:.1f} MiB (60 % of that peak)")
for name, run in (("unlimited", unlimited), ("limited", limited), ("unlimited again", again)):
    if not run:
        lines.append(f"  {name}: no run record yet")
        continue
    memory = run.get("memory") or {}
    peak_bytes = memory.get("peak_bytes")
    lines.append(
        f"  {name}: result {run.get('result')}, duration {run.get('duration_secs')} s, "
        f"cgroup memory.peak {peak_bytes / 2**20 if peak_bytes else float('nan'):.1f} MiB, "
        f"memory.events high {memory.get('high_events', 'n/a')}, "
        f"memory.pressure some total {memory.get('stalled_secs', 'n/a')} s"
    )
if unlimited and limited and unlimited.get("duration_secs") and limited.get("duration_secs"):
    lines.append(f"  ratio limited/unlimited: {limited['duration_secs'] / unlimited['duration_secs']:.3f}")
    if again and again.get("duration_secs"):
        mean = (unlimited["duration_secs"] + again["duration_secs"]) / 2
        lines.append(f"  ratio limited/mean of both unlimited runs: {limited['duration_secs'] / mean:.3f}")
for name in ("phases", "guest-loadavg", "systemd-consumed"):
    text = read(name)
    if text:
        lines.append(f"  {name}:")
        lines.extend("    " + line for line in text.splitlines()[-40:])
host = read("host-loadavg")
if host:
    loads = [float(line.split()[1]) for line in host.splitlines() if len(line.split()) > 1]
    if loads:
        lines.append(f"  host load average (1 min) over the run: min {min(loads):.2f}, "
                     f"mean {sum(loads) / len(loads):.2f}, max {max(loads):.2f} ({len(loads)} samples)")
open(os.path.join(out, "summary.txt"), "w").write("\n".join(lines) + "\n")
PY
}
collect() {
	[[ -d $share/out ]] && cp -f "$share"/out/* "$results"/ 2>/dev/null
	summarise || true
}
(
	while sleep 15; do
		printf '%s %s\n' "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/host-loadavg"
		collect
	done
) &
watcher=$!
trap 'kill "$watcher" 2>/dev/null; collect; rm -rf "$share"' EXIT
echo "figures go to $results as they are known"
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
phase() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >>"$out/phases"; }
phase "guest up, $(nproc) vCPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo), $(uname -r), $(systemctl --version | head -n 1)"
install -m 0755 /mnt/host/restic /usr/local/bin/restic
tar -C "$w" -xf /mnt/host/tree.tar
phase "tree unpacked"
echo "bench password" > "$w/password"
chmod 600 "$w/password"
export RESTIC_PASSWORD_FILE=$w/password
bc() { /mnt/host/backupctl --config "$w/config.toml" "$@"; }
# The guest's load average, every 10 s, all along.
while sleep 10; do printf '%s %s\n' "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/guest-loadavg"; done &
loadavg=$!

# One run of the stage into a fresh repository; $1: its name, $2: extra config lines. The
# run record is the last line of runs.jsonl, kept as $out/$1.json at once; a failed job is
# noted, not fatal, so the records of the other runs stay.
run() {
	rm -rf "$w/repo" /var/cache/backupctl
	restic init --quiet --repo "$w/repo"
	cat > "$w/config.toml" <<TOML
[stage.bench]
kind = "restic"
repository = "$w/repo"
password_file = "$w/password"
paths = ["$w/tree"]
$2
TOML
	bc generate --output /run/systemd/system --binary /mnt/host/backupctl
	systemctl daemon-reload
	phase "$1 starts"
	systemctl start backup-job.service || phase "$1: backup-job.service failed ($?)"
	phase "$1 ends, load $(cut -d' ' -f1-3 /proc/loadavg)"
	tail -n 1 /var/lib/backupctl/runs.jsonl > "$out/$1.json"
	journalctl -q -o cat -u backup@bench.service --since "-3h" | grep -i consumed | tail -n 1 |
		sed "s/^/$1: /" >>"$out/systemd-consumed" || true
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

# The limited stage's cgroup as the kernel reports it, every 5 s while it runs: a check on
# the figures stage-ended records.
sample_cgroup() {
	local cg
	while [[ ! -f $w/done ]]; do
		sleep 5
		cg=$(systemctl show -P ControlGroup backup@bench.service 2>/dev/null) || continue
		[[ -n $cg && -d /sys/fs/cgroup$cg ]] || continue
		{
			printf '%s high=%s ' "$(date -u +%H:%M:%S)" "$(awk '$1 == "high" {print $2}' "/sys/fs/cgroup$cg/memory.events")"
			printf 'current=%s ' "$(cat "/sys/fs/cgroup$cg/memory.current")"
			head -n 1 "/sys/fs/cgroup$cg/memory.pressure"
		} >>"$out/cgroup-samples" 2>/dev/null || true
	done
}

run warm-up "" # the tree into the page cache
rm -f "$w/done"
peak_of_restic > "$out/peak" &
sampler=$!
run unlimited ""
touch "$w/done"
wait "$sampler"
peak=$(cat "$out/peak")
limit=$((peak * 60 / 100))
echo "$limit" > "$out/limit"
rm -f "$w/done"
sample_cgroup &
sampler=$!
run limited "memory_high = \"${limit}K\""
touch "$w/done"
wait "$sampler"
# Unlimited once more: the runs go in a fixed order (the limit comes from the first), so a
# drift over the runs (page cache, the host's load) shows as a gap between the two.
run unlimited-again ""
kill "$loadavg"
phase "GUEST DONE"
GUEST

rc=0
"$here/guest/run" "$share" --timeout "${BENCH_GUEST_TIMEOUT:-3600}" || rc=$?
collect
if ((rc != 0)); then
	tail -n 40 "$share/out/log" 2>/dev/null || true
	echo "memory-high bench: the guest failed ($rc); what it measured is in $results" >&2
fi
cat "$results/summary.txt"
exit "$rc"
