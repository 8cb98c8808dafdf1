#!/bin/sh
# Written by backupctl's gitrepos stage `@STAGE@` on @NOW@.
# Clones every repository that has a remote back to where it was found.
#
# Usage: restore-repos.sh [PREFIX]     PREFIX is put before every path (e.g. /mnt/restore).
#
# A repository whose directory is missing is cloned. One whose directory was restored from a
# backup without its .git (see exclude-pushed.txt) gets its history back under the restored
# files, which are left as they are. Repositories with a .git already are left alone.
# Submodules are cloned as repositories of their own; `git submodule absorbgitdirs` in the
# superproject moves them under it again.
#
# The paths and URLs in the restore lines are quoted literally: a `$` in them expands nothing.
# shellcheck disable=SC2016
set -u
prefix="${1:-}"
failed=0

# clone TARGET GIT-CLONE-OPTION...: on the recorded branch if the remote has it, else its default.
clone() {
    target="$1"
    shift
    git clone --quiet "$@" ${branch:+--branch "$branch"} -- "$url" "$target" 2>/dev/null ||
        { rm -rf "$target"; git clone --quiet "$@" -- "$url" "$target"; }
}

# has_head: the recorded commit is in the clone (else it was never pushed: left at the
# remote's branch, with a note).
has_head() {
    [ -n "$head" ] || return 1
    git -C "$dest" cat-file -e "$head^{commit}" 2>/dev/null && return 0
    echo "note: $dest: commit $head is not on $url; left at the remote's branch" >&2
    return 1
}

# restore PATH KIND BRANCH HEAD REMOTE URL [REMOTE URL]...
restore() {
    dest="$prefix$1" kind="$2" branch="$3" head="$4" origin="$5" url="$6"
    shift 6
    if [ -e "$dest/.git" ] || { [ "$kind" = bare ] && [ -e "$dest/HEAD" ]; }; then
        echo "present: $dest"
        return 0
    fi
    if [ "$kind" = bare ]; then
        clone "$dest" --bare --origin "$origin" || return 1
    elif [ -d "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
        tmp=$(mktemp -d "$dest.restore-XXXXXX") || return 1
        # Any step failing, the last one included, leaves nothing behind: A && B || C is meant.
        # shellcheck disable=SC2015
        clone "$tmp" --no-checkout --origin "$origin" &&
            mv "$tmp/.git" "$dest/.git" && rmdir "$tmp" || { rm -rf "$tmp"; return 1; }
        # Index from the recorded commit, files untouched: what differs shows as modified.
        if has_head; then
            [ -n "$branch" ] || git -C "$dest" update-ref --no-deref HEAD "$head" || return 1
            git -C "$dest" reset --quiet "$head" || return 1
        else
            git -C "$dest" reset --quiet || return 1
        fi
    else
        clone "$dest" --origin "$origin" || return 1
        if has_head && [ -n "$branch" ]; then
            git -C "$dest" reset --quiet --hard "$head" || return 1
        elif has_head; then
            git -C "$dest" checkout --quiet --detach "$head" || return 1
        fi
    fi
    while [ $# -ge 2 ]; do
        git -C "$dest" remote add "$1" "$2" || return 1
        shift 2
    done
    echo "restored: $dest"
}

