#!/usr/bin/env bash
# drill stage vs. what a careful admin would do by hand: `restic restore` of the same files
# plus `b3sum -c` against hashes taken at backup time. Tree: BENCH_DRILL_MB MiB (default
# 1024) in 1 MiB files, backed up once into a local repository; the drill restores all of it
# (`sample = "100%"`) and checks it against the manifest stage's BLAKE3 list, the baseline
# restores the same snapshot and runs `b3sum -c` on the same hashes. Both read the
# repository from the page cache (one warm-up run each).
#
# Prints: hyperfine's table and the wall-time ratio drill/baseline (target <= 1.1).
#
# Environment: BENCH_DRILL_MB, BENCH_RUNS (default 3), BENCH_DIR, BACKUPCTL_BIN.
set -euo pipefail

MB=${BENCH_DRILL_MB:-1024}
RUNS=${BENCH_RUNS:-3}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/backupctl-bench-drill.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT
for tool in restic b3sum hyperfine python3; do
	command -v "$tool" >/dev/null || { echo "drill bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done

tree=$WORK/tree
echo "making a tree of $MB MiB in 1 MiB files under $tree"
python3 - "$tree" "$MB" <<'PY'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    d = os.path.join(root, f"d{i // 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(os.urandom(1024 * 1024))
PY

echo "benchmark password $RANDOM$RANDOM" >"$WORK/password"
chmod 600 "$WORK/password"
cat >"$WORK/config.toml" <<TOML
[stage.manifest]
kind = "manifest"
sources = ["$tree"]

[stage.backup]
kind = "restic"
repository = "$WORK/repo"
password_file = "$WORK/password"
init = true
paths = ["$tree"]

[jobs.drill]

[stage.drill]
job = "drill"
kind = "drill"
stage = "backup"
sample = "100%"
newest = 0
manifest = "manifest"
TOML
export RESTIC_REPOSITORY=$WORK/repo RESTIC_PASSWORD_FILE=$WORK/password
export RESTIC_CACHE_DIR=$WORK/cache XDG_CACHE_HOME=$WORK/xdg-cache STATE_DIRECTORY=$WORK/state/backupctl
"$BIN" --user --config "$WORK/config.toml" run --here >/dev/null 2>&1
# The baseline's hashes, taken at "backup time" as the manifest's are.
(cd / && find "${tree#/}" -type f -print0 | sort -z | xargs -0 b3sum) >"$WORK/sums"

baseline="rm -rf '$WORK/restore' && restic restore latest --quiet --target '$WORK/restore' && cd '$WORK/restore' && b3sum --check --quiet '$WORK/sums'"
drill="'$BIN' --user --config '$WORK/config.toml' stage drill"

hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/hyperfine.json" \
	--command-name "restic restore + b3sum -c" "$baseline" \
	--command-name "backupctl drill (100% sample)" "$drill"

python3 - "$WORK/hyperfine.json" "$MB" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
base, drill = results[0]["mean"], results[1]["mean"]
print(f"\ndrill bench, {sys.argv[2]} MiB sample:")
print(f"  wall time: restore + b3sum -c {base:.2f} s, drill {drill:.2f} s, ratio {drill / base:.3f} (target <= 1.1)")
PY
