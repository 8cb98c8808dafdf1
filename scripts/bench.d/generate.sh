#!/usr/bin/env bash
# `backupctl generate` on configs of 5, 50 and 500 stages, as a ratio to `backupctl --version`
# (process start-up) in the same hyperfine run.
set -euo pipefail
bin=${BACKUPCTL_BIN:?run through scripts/bench}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

make_config() { # STAGES FILE
	{
		printf '[job]\nschedule = "daily"\n\n[stage.hello]\nkind = "hello"\n'
		for ((i = 1; i < $1; i++)); do
			if ((i % 2)); then
				printf '\n[stage.copy%d]\nkind = "rsync"\nsources = ["/srv/data%d/"]\ndestination = "/backup/data%d/"\nafter = ["hello"]\n' "$i" "$i" "$i"
			else
				printf '\n[stage.run%d]\nkind = "exec"\ncommand = ["/usr/bin/true", "%d"]\nwrites = ["/backup/out%d"]\n' "$i" "$i" "$i"
			fi
		done
	} >"$2"
}

args=()
for n in 5 50 500; do
	make_config "$n" "$work/$n.toml"
	args+=(-n "generate-$n" "$bin --config $work/$n.toml generate --output $work/out-$n")
done
hyperfine -N --warmup 5 --min-runs 30 --export-json "$work/result.json" \
	-n version "$bin --version" "${args[@]}" >/dev/null
python3 - "$work/result.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = results["version"]["mean"]
print(f"{'command':<14} {'mean':>10} {'stddev':>9} {'ratio to --version':>19}")
for name, r in results.items():
    print(f"{name:<14} {r['mean']*1000:>8.2f}ms {r['stddev']*1000:>7.2f}ms {r['mean']/base:>18.2f}x")
PY
