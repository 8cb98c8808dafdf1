#!/usr/bin/env bash
# restic stage vs. the same `restic backup` run directly, on a tree of BENCH_RESTIC_MB MiB
# (default 1024) in many files (64 KiB each, 1000 per directory), into a fresh local
# repository each run (initialised in hyperfine's --prepare, not timed; one warm-up run
# first, so that both commands read the tree from the page cache).
#
# Prints: hyperfine's table; the wall-time ratio backupctl/direct (target ≤ 1.02); restic's
# peak RSS (/usr/bin/time -v) and backupctl's own peak RSS (VmHWM of its process, sampled
# until it exits; target ≤ 10 MiB).
#
# Environment: BENCH_RESTIC_MB (tree size), BENCH_RUNS (hyperfine runs, default 3),
# BENCH_DIR (work directory, default a temporary one under /var/tmp), BACKUPCTL_BIN.
set -euo pipefail

MB=${BENCH_RESTIC_MB:-1024}
RUNS=${BENCH_RUNS:-3}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/backupctl-bench-restic.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT
for tool in restic hyperfine /usr/bin/time python3; do
	command -v "$tool" >/dev/null || { echo "restic bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done

tree=$WORK/tree
files=$((MB * 16)) # 64 KiB each
echo "making a tree of $MB MiB in $files files under $tree"
python3 - "$tree" "$files" <<'PY'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    d = os.path.join(root, f"d{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        f.write(os.urandom(64 * 1024))
PY

echo "benchmark password $RANDOM$RANDOM" >"$WORK/password"
chmod 600 "$WORK/password"
cat >"$WORK/config.toml" <<TOML
[stage.bench]
kind = "restic"
repository = "$WORK/repo"
password_file = "$WORK/password"
paths = ["$tree"]
TOML
export RESTIC_REPOSITORY=$WORK/repo RESTIC_PASSWORD_FILE=$WORK/password
export RESTIC_CACHE_DIR=$WORK/cache XDG_CACHE_HOME=$WORK/xdg-cache STATE_DIRECTORY=$WORK/state/backupctl
prepare="rm -rf '$WORK/repo' '$WORK/cache' '$WORK/xdg-cache' && restic init --quiet"
direct="restic backup --quiet -- '$tree'"
stage="'$BIN' --user --config '$WORK/config.toml' stage bench"

hyperfine --runs "$RUNS" --warmup 1 --prepare "$prepare" --export-json "$WORK/hyperfine.json" \
	--command-name "restic backup (direct)" "$direct" \
	--command-name "backupctl stage (restic)" "$stage"

# Peak memory: restic's from time -v; backupctl's own from its VmHWM, sampled until it exits.
eval "$prepare"
restic_rss=$(/usr/bin/time -v sh -c "$direct" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}')
eval "$prepare"
"$BIN" --user --config "$WORK/config.toml" stage bench 2>/dev/null &
pid=$!
own_rss=0
while kill -0 "$pid" 2>/dev/null; do
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
	[[ -n $hwm ]] && own_rss=$hwm
	sleep 0.2
done
wait "$pid"

python3 - "$WORK/hyperfine.json" "$restic_rss" "$own_rss" "$MB" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
direct, stage = results[0]["mean"], results[1]["mean"]
print(f"\nrestic bench, {sys.argv[4]} MiB tree:")
print(f"  wall time: direct {direct:.2f} s, backupctl {stage:.2f} s, ratio {stage / direct:.3f} (target <= 1.02)")
print(f"  peak RSS: restic {int(sys.argv[2]) / 1024:.1f} MiB, backupctl itself {int(sys.argv[3]) / 1024:.1f} MiB (target <= 10 MiB)")
PY
