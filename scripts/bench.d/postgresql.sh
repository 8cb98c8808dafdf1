#!/usr/bin/env bash
# postgresql stage and its drill vs. what an admin would type by hand, on one PostgreSQL
# database of BENCH_PG_MB MiB (default 64 for a quick run; the issue's figure is 1024) in a
# scratch server (Debian's PostgreSQL 15, run as the postgres account, on a socket):
#
# - dump: `backupctl stage pg` (pg_dump --format=custom streamed into a local restic
#   repository) vs `pg_dump --format=custom | restic backup --stdin` (target ratio <= 1.02);
#   backupctl's own peak RSS while it streams (VmHWM of the backupctl process, sampled from
#   /proc: not restic's, not pg_dump's; target <= 20 MiB);
# - drill: `backupctl stage drill` (a throw-away server: initdb, postgres, the roles, then
#   the database; of stage `pgall`, which dumps the roles too: the drill's server has no
#   others) vs `createdb` + `restic dump | pg_restore --exit-on-error` into the bench server
#   (target ratio <= 1.1), and the restore time the drill reports (its run record).
#
# The commands compared run in rounds, each command once per round and the order turned
# every round (A B, B A, …): on a machine whose load changes (this one runs qemu guests),
# hyperfine's runs of one command after all of the other's put the change on one side
# (1.045 and 1.53 for the same binary). Each round gives a ratio; the median is reported,
# with every round's wall and CPU time (/usr/bin/time).
#
# Environment: BENCH_PG_MB, BENCH_RUNS (rounds, default 3), BENCH_DIR, BACKUPCTL_BIN. A BENCH_DIR
# that holds a server from an earlier run (data/, run/, port) is used as it is (its database
# `bench` made once: a 1 GiB one takes minutes) and left in place; else the directory is
# removed at the end. Figures: docs/databases.md, "Measured".
set -euo pipefail

MB=${BENCH_PG_MB:-64}
RUNS=${BENCH_RUNS:-3}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
PGBIN=/usr/lib/postgresql/15/bin
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/backupctl-bench-pg.XXXXXX)}
KEEP=${BENCH_DIR:+yes}
for tool in restic python3 pg_dump pg_restore psql createdb dropdb runuser; do
	command -v "$tool" >/dev/null || { echo "postgresql bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done
[[ -x $PGBIN/initdb ]] || { echo "postgresql bench needs $PGBIN/initdb: run scripts/setup-deps" >&2; exit 1; }
as_postgres() { runuser -u postgres -- "$@"; }
stop() {
	as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1 || true
	if [[ -n $KEEP ]]; then
		rm -rf "$WORK/repo" "$WORK/state" "$WORK/cache" "$WORK/xdg-cache" "$WORK"/*.jsonl "$WORK/time.txt"
	else
		rm -rf "$WORK"
	fi
}
trap stop EXIT

if [[ ! -f $WORK/data/PG_VERSION ]]; then
	# The server runs as postgres: it enters the directory (and the drill's scratch below
	# it) and owns only its data and socket directories (backupctl refuses a config in a
	# directory another user may write).
	chmod 0755 "$WORK"
	mkdir -m 0700 "$WORK/data" "$WORK/run"
	chown postgres:postgres "$WORK/data" "$WORK/run"
	echo $((20000 + RANDOM % 10000)) >"$WORK/port"
	as_postgres "$PGBIN/initdb" --auth-local=peer --auth-host=reject --username=postgres \
		--encoding=UTF8 --locale=C.UTF-8 --no-sync -D "$WORK/data" >/dev/null
fi
PORT=$(<"$WORK/port")
as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" status >/dev/null ||
	as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/run/server.log" -w \
		-o "-k $WORK/run -p $PORT -c listen_addresses= -c fsync=off" start >/dev/null
export PGHOST=$WORK/run PGPORT=$PORT
if ! psql -X -q -d postgres -c "SELECT 1" >/dev/null 2>&1; then
	as_postgres psql -X -q -h "$WORK/run" -p "$PORT" -d postgres -c "CREATE ROLE root SUPERUSER LOGIN"
fi
if [[ -z $(psql -X -A -t -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'bench'") ]]; then
	echo "making a database of about $MB MiB"
	# Rows of ~1 KiB: one random md5 repeated 32 times, so the custom-format dump is small
	# (26.5 MiB for 1 GiB): the figures weigh the database side, not compression.
	psql -X -q -d postgres -c "CREATE DATABASE bench"
	psql -X -q -d bench -c "CREATE TABLE rows AS SELECT i, repeat(md5(random()::text), 32) AS data FROM generate_series(1, $((MB * 1024))) AS i"
fi
psql -X -A -t -d bench -c "SELECT pg_size_pretty(pg_database_size('bench'))" | sed 's/^/database size: /'

mkdir -p "$WORK/state"
echo "benchmark password $RANDOM$RANDOM" >"$WORK/password"
chmod 600 "$WORK/password"
export RESTIC_REPOSITORY=$WORK/repo RESTIC_PASSWORD_FILE=$WORK/password
export RESTIC_CACHE_DIR=$WORK/cache XDG_CACHE_HOME=$WORK/xdg-cache STATE_DIRECTORY=$WORK/state/backupctl
restic init --quiet
cat >"$WORK/config.toml" <<TOML
[stage.repo]
kind = "restic"
repository = "$WORK/repo"
password_file = "$WORK/password"
operation = "check"

[stage.pg]
kind = "postgresql"
host = "$WORK/run"
port = $PORT
databases = ["bench"]
globals = false
restic = "repo"

[stage.pgall]
kind = "postgresql"
host = "$WORK/run"
port = $PORT
databases = ["bench"]
restic = "repo"

[stage.drill]
kind = "drill"
stage = "pgall"
TOML
host=$(hostname)

# rounds OUT PREPARE NAME CMD [NAME CMD]…: RUNS rounds of the commands (after one warm-up
# round), PREPARE before each command; one JSON line per run in OUT.
rounds() {
	local out=$1 prepare=$2 round i k
	shift 2
	local -a names=() commands=()
	while (($#)); do names+=("$1") commands+=("$2"); shift 2; done
	: >"$out"
	for ((round = 0; round <= RUNS; round++)); do
		for ((i = 0; i < ${#names[@]}; i++)); do
			# Turned every round: the first command runs first in even rounds, last in odd.
			k=$(((round % 2) ? ${#names[@]} - 1 - i : i))
			bash -c "$prepare" >/dev/null 2>&1 || true
			/usr/bin/time -o "$WORK/time.txt" -f '%e %U %S' bash -c "${commands[k]}" >/dev/null 2>&1 ||
				{ echo "postgresql bench: ${names[k]} failed" >&2; exit 1; }
			((round == 0)) && continue
			read -r wall user sys <"$WORK/time.txt"
			printf '{"round": %d, "name": "%s", "wall": %s, "user": %s, "sys": %s}\n' \
				"$round" "${names[k]}" "$wall" "$user" "$sys" >>"$out"
			printf '  round %d: %-55s %6.2f s wall, %5.2f s user, %5.2f s sys\n' \
				"$round" "${names[k]}" "$wall" "$user" "$sys"
		done
	done
}

by_hand="pg_dump --format=custom --dbname=bench | restic backup --quiet --stdin --stdin-filename /postgresql/$host/bench.dump --tag by-hand"
echo "dump: $RUNS rounds (and a warm-up round)"
rounds "$WORK/dump.jsonl" true \
	"pg_dump | restic backup --stdin" "$by_hand" \
	"backupctl stage pg" "'$BIN' --user --config '$WORK/config.toml' stage pg"

# backupctl's own peak RSS while it streams: VmHWM of its process, read until it exits.
"$BIN" --user --config "$WORK/config.toml" stage pg >/dev/null 2>&1 &
pid=$!
peak=0
while kill -0 "$pid" 2>/dev/null; do
	hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
	[[ -n $hwm && $hwm -gt $peak ]] && peak=$hwm
	sleep 0.05
done
wait "$pid"

# The drill of pgall's newest dumps vs the same dump loaded by hand into a new database of
# the bench server (dropped before each run).
"$BIN" --user --config "$WORK/config.toml" stage pgall >/dev/null
fetch="restic dump --quiet --tag backupctl:pgall --path /postgresql/$host/bench.dump latest /postgresql/$host/bench.dump"
# The same work as the drill, by hand: a throw-away server (initdb, start), the roles, the
# database, then stop and remove it; for the drill's own overhead (not the issue's target).
cat >"$WORK/throwaway.sh" <<SH
set -euo pipefail
d=\$(mktemp -d /var/tmp/backupctl-bench-pg-throwaway.XXXXXX)
chmod 0755 "\$d"
mkdir -m 0700 "\$d/data" "\$d/run"
chown postgres:postgres "\$d/data" "\$d/run"
runuser -u postgres -- $PGBIN/initdb --auth=trust --username=postgres --encoding=UTF8 \\
	--locale=C.UTF-8 --no-sync --no-instructions -D "\$d/data" >/dev/null
runuser -u postgres -- $PGBIN/pg_ctl -D "\$d/data" -l "\$d/run/log" -w \\
	-o "-k \$d/run -c listen_addresses= -c fsync=off" start >/dev/null
restic dump --quiet --tag backupctl:pgall --path /postgresql/$host/globals.sql latest \\
	/postgresql/$host/globals.sql | psql -X -q -h "\$d/run" -U postgres -d postgres 2>/dev/null
createdb -h "\$d/run" -U postgres --template=template0 bench
$fetch | pg_restore --exit-on-error -h "\$d/run" -U postgres --dbname=bench
runuser -u postgres -- $PGBIN/pg_ctl -D "\$d/data" -m immediate -w stop >/dev/null
rm -rf "\$d"
SH
echo "drill: $RUNS rounds (and a warm-up round)"
rounds "$WORK/drill.jsonl" "dropdb --if-exists restored" \
	"createdb + restic dump | pg_restore" \
	"createdb restored && $fetch | pg_restore --exit-on-error --dbname=restored" \
	"backupctl stage drill" "'$BIN' --user --config '$WORK/config.toml' stage drill" \
	"throw-away server + restic dump | pg_restore, by hand" "bash '$WORK/throwaway.sh'"
dropdb --if-exists restored 2>/dev/null

python3 - "$WORK" "$MB" "$peak" <<'PY'
import json, statistics, sys
work, mb, peak_kib = sys.argv[1], sys.argv[2], int(sys.argv[3])

def load(name):
    runs = {}
    for line in open(f"{work}/{name}.jsonl"):
        run = json.loads(line)
        runs.setdefault(run["name"], {})[run["round"]] = run
    return runs

def compare(runs, base, other, target, cpu_too=True):
    """Median of the rounds' ratios other/base, with each ratio."""
    ratios = [runs[other][r]["wall"] / runs[base][r]["wall"] for r in sorted(runs[base])]
    cpu = [(runs[other][r]["user"] + runs[other][r]["sys"])
           / max(runs[base][r]["user"] + runs[base][r]["sys"], 1e-9) for r in sorted(runs[base])]
    walls = lambda name: statistics.median(run["wall"] for run in runs[name].values())
    print(f"  {other}: median {walls(other):.2f} s; {base}: {walls(base):.2f} s")
    print(f"    ratio per round " + ", ".join(f"{r:.3f}" for r in ratios)
          + f"; median {statistics.median(ratios):.3f}" + (f" (target <= {target})" if target else ""))
    if cpu_too:
        print(f"    CPU (user+sys, children counted) ratio median {statistics.median(cpu):.3f}")

restores = []
for line in open(f"{work}/state/backupctl/runs.jsonl"):
    record = json.loads(line)
    if record.get("stage") == "drill" and record.get("result") == "success":
        restores.append(record["figures"]["restore_seconds"])
print(f"\npostgresql bench, {mb} MiB database:")
dump = load("dump")
compare(dump, "pg_dump | restic backup --stdin", "backupctl stage pg", 1.02)
print(f"  backupctl's own peak RSS while streaming: {peak_kib / 1024:.1f} MiB (target <= 20)")
drill = load("drill")
# The drill's server is its child (its CPU counted), the bench server is not: no CPU ratio.
compare(drill, "createdb + restic dump | pg_restore", "backupctl stage drill", 1.1, False)
compare(drill, "throw-away server + restic dump | pg_restore, by hand", "backupctl stage drill", None, False)
by_hand = statistics.median(run["wall"] for run in drill["createdb + restic dump | pg_restore"].values())
print(f"  restore time the drill reported: "
      + ", ".join(f"{s:.2f} s" for s in restores) + f" ({len(restores)} drills); median / by hand "
      + f"{statistics.median(restores) / by_hand:.3f} (the warm-up round's drill included)")
PY
