#!/usr/bin/env bash
# `backupctl check` and `generate` on chains of 1 000, 10 000 and 50 000 stages (each stage
# after the previous one), as a ratio to the 1 000-stage run in the same hyperfine run: linear
# work gives about 10 and 50 (issue 11: 20 000 stages took 12.6 s, quadratic).
set -euo pipefail
bin=${BACKUPCTL_BIN:?run through scripts/bench}
# Not under /tmp: like every scratch directory of the project (units see a private /tmp).
work=$(mktemp -d "${BENCH_TMP:-$PWD/target/tmp}/scale.XXXXXX")
trap 'rm -rf "$work"' EXIT

make_chain() { # STAGES FILE
	awk -v n="$1" 'BEGIN {
		print "[job]\nschedule = \"daily\"\n"
		for (i = 0; i < n; i++)
			printf "[stage.s%d]\nkind = \"exec\"\ncommand = [\"/usr/bin/true\", \"%d\"]\nwrites = [\"/backup/out%d\"]\n\n", i, i, i
	}' >"$2"
}

sizes=(1000 10000 50000)
for n in "${sizes[@]}"; do make_chain "$n" "$work/$n.toml"; done

report() { # JSON BASELINE
	python3 - "$1" "$2" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = results[sys.argv[2]]["mean"]
print(f"{'command':<16} {'mean':>10} {'stddev':>9} {'ratio to 1000':>14}")
for name, r in results.items():
    print(f"{name:<16} {r['mean']*1000:>8.1f}ms {r['stddev']*1000:>7.1f}ms {r['mean']/base:>13.1f}x")
PY
}

args=()
for n in "${sizes[@]}"; do args+=(-n "check-$n" "$bin --config $work/$n.toml check"); done
hyperfine -N --warmup 1 --min-runs 5 --output=null --export-json "$work/check.json" "${args[@]}" >/dev/null 2>&1
echo "-- check"
report "$work/check.json" check-1000

# Rendering alone (what the program does; the writes below are the filesystem's work).
args=()
for n in "${sizes[@]}"; do args+=(-n "render-$n" "$bin --config $work/$n.toml generate --dry-run --binary /usr/bin/backupctl"); done
hyperfine -N --warmup 1 --min-runs 5 --output=null --export-json "$work/render.json" "${args[@]}" >/dev/null 2>&1
echo "-- generate --dry-run (rendering only)"
report "$work/render.json" render-1000

# Into a fresh directory each run: every unit is written (the file writes dominate).
args=()
prepare="rm -rf"
for n in "${sizes[@]}"; do
	args+=(-n "generate-$n" "$bin --config $work/$n.toml generate --binary /usr/bin/backupctl --output $work/out-$n")
	prepare+=" $work/out-$n"
done
hyperfine -N --warmup 1 --min-runs 5 --prepare "$prepare" --export-json "$work/generate.json" "${args[@]}" >/dev/null 2>&1
echo "-- generate (fresh output directory)"
report "$work/generate.json" generate-1000
