#!/usr/bin/env bash
# git.sh — why the git stage drives the `git` program instead of a git library, and what
# the stage costs over a plain copy. Ratios, measured in one hyperfine invocation each:
#
#   1. "record changes" (stage everything, commit only when the tree changed) with the git
#      program vs libgit2 (the git2 crate, scripts/bench.d/git-engine), on a tree of
#      FILES files: the first commit, a run without changes, a run with one changed file;
#   2. a whole `backupctl stage` of a git stage without changes vs `rsync -a` of the
#      same tree (the copy alone).
#
# Usage: scripts/bench.d/git.sh [FILES]     (default: $BENCH_GIT_FILES or 2000 files of 4 KiB
#                                            in 50 directories)
set -euo pipefail
cd "$(dirname "$0")/../.."

files=${1:-${BENCH_GIT_FILES:-2000}}
work=$(mktemp -d /tmp/backupctl-bench-git.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== building the libgit2 bench helper (and backupctl unless BACKUPCTL_BIN is set)"
if [[ -z ${BACKUPCTL_BIN:-} ]]; then
	cargo build --release --quiet
	BACKUPCTL_BIN=$PWD/target/release/backupctl
fi
cargo build --release --quiet --manifest-path scripts/bench.d/git-engine/Cargo.toml
backupctl=$BACKUPCTL_BIN
engine=$PWD/scripts/bench.d/git-engine/target/release/git-engine-bench

echo "== making a tree of $files files"
src=$work/src/Notes
for ((i = 0; i < files; i++)); do
	d=$src/d$((i % 50))
	[[ -d $d ]] || mkdir -p "$d"
	head -c 4096 /dev/urandom >"$d/f$i"
done

# The git program, as the stage calls it (same flags, same config isolation).
cat >"$work/cli.sh" <<'SH'
#!/bin/sh
set -e
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
[ -d "$1/.git" ] || git init -q "$1"
git -C "$1" add --all --force -- .
git -C "$1" diff --cached --quiet --no-renames || \
	git -C "$1" -c user.name=backupctl -c user.email=b@bench commit -q --no-verify -m backup
SH
chmod +x "$work/cli.sh"

for engine_dir in cli lib; do
	mkdir -p "$work/$engine_dir"
	cp -a "$src" "$work/$engine_dir/"
done
cli_repo=$work/cli lib_repo=$work/lib

echo "== 1a. first commit of the whole tree"
hyperfine --warmup 1 --runs 5 \
	--prepare "rm -rf $cli_repo/.git $lib_repo/.git" \
	-n "git program" "$work/cli.sh $cli_repo" \
	-n "libgit2" "$engine $lib_repo"

echo "== 1b. no change"
"$work/cli.sh" "$cli_repo"
"$engine" "$lib_repo"
hyperfine --warmup 2 --runs 20 \
	-n "git program" "$work/cli.sh $cli_repo" \
	-n "libgit2" "$engine $lib_repo"

echo "== 1c. one file changed"
hyperfine --warmup 2 --runs 20 \
	--prepare "date +%N >> $cli_repo/Notes/d0/f0; date +%N >> $lib_repo/Notes/d0/f0" \
	-n "git program" "$work/cli.sh $cli_repo" \
	-n "libgit2" "$engine $lib_repo"

echo "== 2. a git stage without changes vs rsync -a of the same tree"
cat >"$work/config.toml" <<TOML
[stage.git]
kind = "git"
sources = ["$src"]
repository = "$work/stage-repo"
TOML
export STATE_DIRECTORY=$work/state
"$backupctl" --config "$work/config.toml" stage git >/dev/null 2>&1
rsync -a "$src" "$work/rsync-copy/"
hyperfine --warmup 2 --runs 10 \
	-n "rsync -a (copy only)" "rsync -a $src $work/rsync-copy/" \
	-n "backupctl stage git (copy + git)" "$backupctl --config $work/config.toml stage git"
