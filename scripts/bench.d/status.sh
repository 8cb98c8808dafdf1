#!/usr/bin/env bash
# `backupctl --user status --json` for a job of 20 stages (after one run, so every stage has a
# run record), as a ratio to `systemctl --user show backup-job.service` (one unit, every
# property) in the same hyperfine invocation. Runs against the systemd user manager of
# scripts/systemd-sandbox (started if needed) and holds the sandbox's test lock meanwhile, so
# that tests from other checkouts do not meet our units.
#
# Environment: BENCH_STAGES (default 20), BENCH_RUNS (default 50), BACKUPCTL_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."

STAGES=${BENCH_STAGES:-20}
RUNS=${BENCH_RUNS:-50}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
for tool in hyperfine python3 systemctl flock; do
	command -v "$tool" >/dev/null || { echo "status bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "status bench: $BIN is missing; build it (or run scripts/bench)" >&2; exit 1; }

scripts/systemd-sandbox start >/dev/null
eval "$(scripts/systemd-sandbox env)"
# The units run under PrivateTmp=: their files live outside /tmp.
WORK=$(mktemp -d /var/lib/backupctl-bench-status.XXXXXX)
UNITS=$XDG_RUNTIME_DIR/systemd/user.control
exec 9>/run/backupctl-sandbox/tests.lock
flock 9
cleanup() {
	systemctl --user stop backup-job.service >/dev/null 2>&1 || true
	if [[ -e $UNITS/.backupctl-generated ]]; then
		while read -r file; do
			rm -f "$UNITS/$file"
			rmdir "$(dirname "$UNITS/$file")" 2>/dev/null || true
		done <"$UNITS/.backupctl-generated"
		rm -f "$UNITS/.backupctl-generated"
	fi
	systemctl --user daemon-reload || true
	systemctl --user reset-failed || true
	rm -rf "$WORK"
}
trap cleanup EXIT

cp "$BIN" "$WORK/backupctl"
{
	printf '[job]\nschedule = "daily"\n'
	for ((i = 1; i <= STAGES; i++)); do
		printf '\n[stage.s%02d]\nkind = "exec"\ncommand = ["/bin/true"]\n' "$i"
	done
} >"$WORK/config.toml"
status="$WORK/backupctl --config $WORK/config.toml --user status --json"
mkdir -p "$UNITS"
"$WORK/backupctl" --config "$WORK/config.toml" --user generate --output "$UNITS" >/dev/null
systemctl --user daemon-reload
systemctl --user start backup-job.timer backup-job.service
records=$($status | python3 -c 'import json,sys; s=json.load(sys.stdin)["jobs"][0]["stages"]; print(sum(x["result"]=="success" for x in s))')
echo "$STAGES stages, $records with a successful run record; runs.jsonl: $(wc -l <"${STATE_DIRECTORY:-$HOME/.local/state/backupctl}/runs.jsonl") records"

hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$WORK/status.json" \
	-n "systemctl show" "systemctl --user show backup-job.service" \
	-n "backupctl status --json" "$status" >/dev/null
python3 - "$WORK/status.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = results["systemctl show"]["mean"]
print(f"{'command':<24} {'mean':>10} {'stddev':>9} {'ratio to systemctl show':>24}")
for name, r in results.items():
    print(f"{name:<24} {r['mean']*1000:>8.2f}ms {r['stddev']*1000:>7.2f}ms {r['mean']/base:>23.2f}x")
PY
