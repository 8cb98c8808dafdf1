#!/usr/bin/env bash
# What the repository lock (src/repo_lock.rs) adds to a stage's start: `backupctl stage` of a
# restic stage whose program is /bin/true (restic's own time is out of the figure; the stage
# takes and releases its repository's lock: location resolved, flock, holder file), run by
# this backupctl and by BACKUPCTL_BASE_BIN, a backupctl built without the lock (e.g. from
# the commit before src/repo_lock.rs), in one hyperfine invocation; reported as a ratio and
# as milliseconds added. Without BACKUPCTL_BASE_BIN the baseline is an exec stage running
# /bin/true, which does less besides the lock: an indication only. The issue's target: at
# most 5 ms added.
#
# Environment: BENCH_RUNS (default 100), BACKUPCTL_BIN, BACKUPCTL_BASE_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${BENCH_RUNS:-100}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
for tool in hyperfine python3; do
	command -v "$tool" >/dev/null || { echo "repo-lock bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "repo-lock bench: $BIN is missing; build it (or run scripts/bench)" >&2; exit 1; }

WORK=$(mktemp -d "${CARGO_TARGET_DIR:-$PWD/target}/bench-repo-lock.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
printf 'secret\n' >"$WORK/password"
chmod 600 "$WORK/password"
cat >"$WORK/config.toml" <<TOML
[stage.plain]
kind = "exec"
command = ["/bin/true"]

[stage.locked]
kind = "restic"
after = []
repository = "$WORK/repo"
password_file = "$WORK/password"
restic_binary = "/bin/true"
paths = ["$WORK"]
TOML
stage() { echo "env STATE_DIRECTORY=$WORK/state XDG_CACHE_HOME=$WORK/cache NO_COLOR=1 ${2:-$BIN} --user --config $WORK/config.toml stage $1"; }
if [[ -n ${BACKUPCTL_BASE_BIN:-} ]]; then
	baseline=("restic stage, backupctl without the lock" "$(stage locked "$BACKUPCTL_BASE_BIN")")
else
	baseline=("exec stage, no repository" "$(stage plain)")
fi
# Both must succeed, and this backupctl must have taken the repository's lock.
locked=$(stage locked)
# Word splitting is wanted here: the commands are hyperfine's strings, run as they are.
# shellcheck disable=SC2086
${baseline[1]} >/dev/null 2>&1
# shellcheck disable=SC2086
$locked >/dev/null 2>&1
ls "$WORK"/state/locks/repository-*.lock >/dev/null

hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$WORK/repo-lock.json" \
	-n "${baseline[0]}" "${baseline[1]}" \
	-n "restic stage with its repository lock" "$locked" >/dev/null
python3 - "$WORK/repo-lock.json" <<'PY'
import json, sys
plain, locked = (r["mean"] for r in json.load(open(sys.argv[1]))["results"])
print(f"baseline: {plain * 1000:.2f} ms")
print(f"restic stage with its repository lock: {locked * 1000:.2f} ms")
print(f"ratio {locked / plain:.2f}, added {(locked - plain) * 1000:.2f} ms (target: at most 5 ms)")
PY
