#!/usr/bin/env bash
# `backupctl coverage` on a tree of 200 000 files vs `du -s` on the same tree, in one
# hyperfine invocation (target: coverage at most 1.5x du's wall-clock time). The config makes
# coverage do all its kinds of work: a fifth of the tree is under an rsync stage with an
# exclude (walked entry by entry, patterns matched), the rest is under no source (measured as
# du measures it). Both read from the page cache (hyperfine warms up first).
#
# Environment: BENCH_FILES (default 200000), BENCH_RUNS (default 5), BACKUPCTL_BIN.
# Data lives in /var/tmp/backupctl-bench (BENCH_DIR), generated once and reused.
set -euo pipefail
cd "$(dirname "$0")/../.."

FILES=${BENCH_FILES:-200000}
RUNS=${BENCH_RUNS:-5}
DIR=${BENCH_DIR:-/var/tmp/backupctl-bench}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
for tool in hyperfine python3 du; do
	command -v "$tool" >/dev/null || { echo "coverage bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "coverage bench: $BIN is missing; build it (or run scripts/bench)" >&2; exit 1; }

TREE=$DIR/coverage-$FILES
WORK=$DIR/coverage-work
mkdir -p "$DIR"
rm -rf "$WORK" && mkdir -p "$WORK"
if [ ! -e "$TREE/.complete" ]; then
	echo "generating $FILES small files in $TREE (once)"
	rm -rf "$TREE"
	python3 - "$TREE" "$FILES" <<'PY'
import os, sys
root, files = sys.argv[1], int(sys.argv[2])
per_dir = 200
for i in range(files):
    d = os.path.join(root, f"d{i // (per_dir * 50):03d}", f"e{(i // per_dir) % 50:02d}")
    if i % per_dir == 0:
        os.makedirs(d, exist_ok=True)
    name = f"f{i:07d}" + (".tmp" if i % 97 == 0 else "")
    with open(os.path.join(d, name), "wb") as f:
        f.write(b"x" * (i % 9000))
PY
	touch "$TREE/.complete"
fi

cat >"$WORK/config.toml" <<TOML
[stage.part]
kind = "rsync"
sources = ["$TREE/d000", "$TREE/d001", "$TREE/d002", "$TREE/d003"]
destination = "$WORK/dst"
exclude = ["*.tmp", "cache/"]
TOML

echo "-- coverage vs du -s ($(find "$TREE" -type f | wc -l) files)"
# coverage exits 1: something is uncovered (that is the point of the tree).
hyperfine --shell bash --style basic --warmup 1 --runs "$RUNS" --export-json "$WORK/coverage.json" \
	-n "du -s" "du -s '$TREE' >/dev/null" \
	-n "backupctl coverage" "'$BIN' --config '$WORK/config.toml' coverage --json '$TREE' >/dev/null || [ \$? = 1 ]"

python3 - "$WORK/coverage.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
cpu = lambda x: x["user"] + x["system"]
print("== summary")
print("coverage: %.2fx du's wall-clock time (target <= 1.5); CPU time %.2fx; means (s): du %.3f, coverage %.3f"
      % (r[1]["mean"] / r[0]["mean"], cpu(r[1]) / cpu(r[0]), r[0]["mean"], r[1]["mean"]))
PY
