#!/usr/bin/env bash
# The `manifest` and `gitrepos` stages against the obvious shell pipelines:
#   1. manifest, first run (empty cache)  vs  find -type f -print0 | xargs -0 -P2 b3sum
#      (target: at least 0.9x b3sum's throughput)
#   2. manifest, second run (warm cache)  vs  manifest, first run   (target: >= 10x faster);
#      also shown: `find -printf %s`, one fstatat per entry and nothing else, the floor under
#      any second run (it cannot do less than stat every entry)
#   3. gitrepos over N repositories       vs  find -name .git -prune + git status
#      --porcelain=v2 --branch per repository, one after the other  (target: >= 3x faster);
#      also shown: the same git status calls run two at a time (xargs -P2), the best a
#      "spawn git in parallel" design could do here.
# All runs read from the page cache (hyperfine warms up first): this measures the work
# backupctl does, not the disk. Ratios are given twice: by wall-clock time, and by CPU time
# (user + system, children included), which holds up better on a machine busy with other work.
#
# Sizes (environment): BENCH_FILES=200000 BENCH_BYTES=2147483648 BENCH_REPOS=300.
# Data lives in /var/tmp/backupctl-bench (BENCH_DIR), generated once and reused.
set -euo pipefail
cd "$(dirname "$0")/../.."

FILES=${BENCH_FILES:-200000}
BYTES=${BENCH_BYTES:-2147483648}
REPOS=${BENCH_REPOS:-300}
DIR=${BENCH_DIR:-/var/tmp/backupctl-bench}
RUNS=${BENCH_RUNS:-3}

for tool in hyperfine b3sum git python3; do
	command -v "$tool" >/dev/null || { echo "bench: needs $tool (scripts/setup-deps)" >&2; exit 1; }
done
# scripts/bench builds the release binary and passes it in BACKUPCTL_BIN.
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
mkdir -p "$DIR"
TREE=$DIR/tree-$FILES-$BYTES
REPOROOT=$DIR/repos-$REPOS
WORK=$DIR/work
rm -rf "$WORK" && mkdir -p "$WORK"

# -- data ---------------------------------------------------------------------------------
if [ ! -e "$TREE/.complete" ]; then
	echo "generating $FILES files, $BYTES bytes in $TREE (once)"
	rm -rf "$TREE"
	python3 - "$TREE" "$FILES" "$BYTES" <<'PY'
import os, random, sys
root, files, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
# A home directory's shape: mostly small files, a few large ones holding a fifth of the bytes.
large = max(1, files // 1000)
large_size = total // 5 // large
small_total = total - large * large_size
small = files - large
# Small sizes: exponential-ish around the mean, clipped.
mean = small_total / small
sizes = [max(0, int(rng.expovariate(1 / mean))) for _ in range(small)]
scale = small_total / max(1, sum(sizes))
sizes = [int(s * scale) for s in sizes] + [large_size] * large
rng.shuffle(sizes)
block = os.urandom(1 << 20)
per_dir = 200
for i, size in enumerate(sizes):
    d = os.path.join(root, f"d{i // (per_dir * 50):03d}", f"e{(i // per_dir) % 50:02d}")
    if i % per_dir == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:07d}"), "wb") as f:
        off = rng.randrange(0, len(block))
        while size > 0:
            chunk = block[off:off + size] or block[:size]
            f.write(chunk)
            size -= len(chunk)
            off = 0
PY
	touch "$TREE/.complete"
fi

if [ ! -e "$REPOROOT/.complete" ]; then
	echo "generating $REPOS repositories in $REPOROOT (once)"
	rm -rf "$REPOROOT"
	mkdir -p "$REPOROOT/upstream"
	export GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@example.org \
		GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@example.org
	seed=$REPOROOT/upstream/seed
	git init -q -b main "$seed"
	for c in 1 2 3 4 5; do
		for f in $(seq 1 40); do echo "commit $c file $f" >"$seed/f$c-$f.txt"; done
		mkdir -p "$seed/src/$c" && seq 1 1000 >"$seed/src/$c/data.txt"
		git -C "$seed" add . && git -C "$seed" commit -qm "commit $c"
	done
	git clone -q --bare "$seed" "$REPOROOT/upstream/origin.git"
	for i in $(seq 1 "$REPOS"); do
		r=$REPOROOT/home/p$((i % 10))/repo$i
		git clone -q "$REPOROOT/upstream/origin.git" "$r"
		# A mix of states: modified, untracked, committed locally, stashed.
		if ((i % 3 == 0)); then echo change >>"$r/f1-1.txt"; fi
		if ((i % 5 == 0)); then echo new >"$r/untracked.txt"; fi
		if ((i % 7 == 0)); then git -C "$r" commit -qam "local" --allow-empty; fi
		if ((i % 11 == 0)); then echo s >>"$r/f2-2.txt" && git -C "$r" stash -q; fi
	done
	touch "$REPOROOT/.complete"
fi

[ -n "${BACKUPCTL_BIN:-}" ] || cargo build --release --quiet

# -- configs ------------------------------------------------------------------------------
cat >"$WORK/config.toml" <<TOML
[stage.files]
kind = "manifest"
sources = ["$TREE"]
output = "$WORK/out"

[stage.repos]
kind = "gitrepos"
roots = ["$REPOROOT/home"]
output = "$WORK/out"
TOML
export STATE_DIRECTORY=$WORK/state/backupctl
stage() { "$BIN" --user --config "$WORK/config.toml" stage "$1" >/dev/null 2>&1; }
export -f stage
export BIN WORK TREE REPOROOT

ratio() { # json-file baseline-index ours-index → baseline mean / ours mean
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.2f" % (r[int(sys.argv[2])]["mean"]/r[int(sys.argv[3])]["mean"]))' "$@"
}
mean() {
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.3f" % r[int(sys.argv[2])]["mean"])' "$@"
}
cpu_ratio() { # json-file baseline-index ours-index → the same ratio by CPU time (user + system)
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; c=lambda i: r[int(i)]["user"]+r[int(i)]["system"]; print("%.2f" % (c(sys.argv[2])/c(sys.argv[3])))' "$@"
}
cpu() {
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; i=int(sys.argv[2]); print("%.3f" % (r[i]["user"]+r[i]["system"]))' "$@"
}

echo "-- manifest vs b3sum ($(find "$TREE" -type f | wc -l) files, $(du -sh --apparent-size "$TREE" | cut -f1))"
hyperfine --shell bash --style basic --warmup 1 --runs "$RUNS" --export-json "$WORK/manifest.json" \
	--prepare true --prepare "rm -rf '$WORK/state/backupctl/manifest-cache'" --prepare true --prepare true \
	-n "b3sum (find | xargs -0 -P2 b3sum)" "find '$TREE' -type f -print0 | xargs -0 -P2 b3sum >/dev/null" \
	-n "manifest first run" "stage files" \
	-n "manifest second run" "stage files" \
	-n "stat floor (find -printf %s, one core)" "find '$TREE' -printf '%s\n' >/dev/null"
/usr/bin/time -f "manifest second run: max RSS %M KiB" "$BIN" --user --config "$WORK/config.toml" stage files >/dev/null 2>"$WORK/time.txt" || true
tail -1 "$WORK/time.txt"
rm -rf "$WORK/state/backupctl/manifest-cache"
/usr/bin/time -f "manifest first run: max RSS %M KiB" "$BIN" --user --config "$WORK/config.toml" stage files >/dev/null 2>"$WORK/time.txt" || true
tail -1 "$WORK/time.txt"

echo "-- gitrepos vs git status ($REPOS repositories)"
hyperfine --shell bash --style basic --warmup 1 --runs "$RUNS" --export-json "$WORK/gitrepos.json" \
	-n "find + git status, sequential" "find '$REPOROOT/home' -name .git -prune -print | while read -r g; do git -C \"\${g%/.git}\" status --porcelain=v2 --branch >/dev/null; done" \
	-n "find + git status, xargs -P2" "find '$REPOROOT/home' -name .git -prune -print0 | sed -z 's,/.git\$,,' | xargs -0 -P2 -I{} git -C {} status --porcelain=v2 --branch >/dev/null" \
	-n "gitrepos stage" "stage repos"

echo
echo "== summary"
echo "manifest first run: $(ratio "$WORK/manifest.json" 0 1)x b3sum's throughput (target >= 0.9);" \
	"CPU time: $(cpu_ratio "$WORK/manifest.json" 0 1)x"
echo "manifest second run: $(ratio "$WORK/manifest.json" 1 2)x faster than the first (target >= 10);" \
	"CPU time: $(cpu_ratio "$WORK/manifest.json" 1 2)x; a run doing nothing but the stats would be" \
	"$(cpu_ratio "$WORK/manifest.json" 1 3)x (first run CPU / stat floor CPU)"
echo "gitrepos: $(ratio "$WORK/gitrepos.json" 0 2)x faster than sequential git status (target >= 3);" \
	"$(ratio "$WORK/gitrepos.json" 1 2)x faster than git status two at a time;" \
	"CPU time: $(cpu_ratio "$WORK/gitrepos.json" 0 2)x less than sequential git status"
echo "means (s): b3sum $(mean "$WORK/manifest.json" 0), first $(mean "$WORK/manifest.json" 1)," \
	"second $(mean "$WORK/manifest.json" 2), stat floor $(mean "$WORK/manifest.json" 3);" \
	"git status $(mean "$WORK/gitrepos.json" 0), git status -P2 $(mean "$WORK/gitrepos.json" 1)," \
	"gitrepos $(mean "$WORK/gitrepos.json" 2)"
echo "CPU (s): first $(cpu "$WORK/manifest.json" 1), second $(cpu "$WORK/manifest.json" 2)," \
	"stat floor $(cpu "$WORK/manifest.json" 3); git status $(cpu "$WORK/gitrepos.json" 0)," \
	"gitrepos $(cpu "$WORK/gitrepos.json" 2)"
