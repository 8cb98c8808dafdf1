#!/usr/bin/env bash
# Repository figures: what one refresh costs a backup on a repository of many snapshot files,
# against `restic snapshots --json` run by hand (the refresh's one restic command).
#
# The repository gets BENCH_FIGURES_SNAPSHOTS snapshot files (default 2000; the issue's
# case is 20000): one real backup, then copies of its snapshot file with other times and
# hosts, encrypted with the repository's key (restic's format: AES-256-CTR, Poly1305-AES,
# the file named by its SHA-256), since 20 000 `restic backup` runs would take hours.
# `restic check` must accept them (checked below).
#
# Timed with hyperfine, each in the same run:
#   A  restic snapshots --json --no-lock                      (by hand)
#   B  restic backup of a tiny tree                           (the backup alone)
#   C  backupctl stage of that backup (backup + figures refresh)
# Prints the refresh's cost (C − B) and its ratio to A (target: about 1, the refresh is
# that one command plus parsing), and once, the sizes measure a check or prune adds
# (`restic stats --mode raw-data` and `--mode restore-size`).
#
# Environment: BENCH_FIGURES_SNAPSHOTS, BENCH_RUNS (default 5), BENCH_DIR (default a
# temporary directory under /var/tmp), BACKUPCTL_BIN.
set -euo pipefail

COUNT=${BENCH_FIGURES_SNAPSHOTS:-2000}
RUNS=${BENCH_RUNS:-5}
BIN=${BACKUPCTL_BIN:-$PWD/target/release/backupctl}
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/backupctl-bench-figures.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT
for tool in restic hyperfine python3; do
	command -v "$tool" >/dev/null || { echo "figures bench needs $tool: run scripts/setup-deps" >&2; exit 1; }
done
python3 -c 'import cryptography' 2>/dev/null ||
	{ echo "figures bench needs python3-cryptography: apt-get install python3-cryptography" >&2; exit 1; }

mkdir -p "$WORK/tiny"
echo "a small tree" >"$WORK/tiny/file"
echo "benchmark password $RANDOM$RANDOM" >"$WORK/password"
chmod 600 "$WORK/password"
export RESTIC_REPOSITORY=$WORK/repo RESTIC_PASSWORD_FILE=$WORK/password
export RESTIC_CACHE_DIR=$WORK/cache XDG_CACHE_HOME=$WORK/xdg-cache STATE_DIRECTORY=$WORK/state/backupctl
restic init --quiet
restic backup --quiet --host seed -- "$WORK/tiny" >/dev/null

restic cat snapshot "$(restic snapshots --json --no-lock | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')" >"$WORK/seed.json"

echo "writing $COUNT snapshot files into $WORK/repo"
python3 - "$WORK/repo" "$WORK/password" "$COUNT" "$WORK/seed.json" <<'PY'
import base64, datetime, hashlib, json, os, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.poly1305 import Poly1305

repo, password, count = sys.argv[1], open(sys.argv[2], "rb").read().rstrip(b"\n"), int(sys.argv[3])

def ctr(key, iv, data):
    return Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor().update(data)

def mac(k, r, iv, ciphertext):
    s = Cipher(algorithms.AES(k), modes.ECB()).encryptor().update(iv)
    return Poly1305.generate_tag(r + s, ciphertext)

def decrypt(keys, blob):
    enc, k, r = keys
    iv, ciphertext, tag = blob[:16], blob[16:-16], blob[-16:]
    assert mac(k, r, iv, ciphertext) == tag, "wrong key"
    return ctr(enc, iv, ciphertext)

def encrypt(keys, plaintext):
    enc, k, r = keys
    iv = os.urandom(16)
    ciphertext = ctr(enc, iv, plaintext)
    return iv + ciphertext + mac(k, r, iv, ciphertext)

key_file = json.load(open(os.path.join(repo, "keys", os.listdir(os.path.join(repo, "keys"))[0])))
derived = Scrypt(salt=base64.b64decode(key_file["salt"]), length=64,
                 n=key_file["N"], r=key_file["r"], p=key_file["p"]).derive(password)
user = (derived[:32], derived[32:48], derived[48:64])
master = json.loads(decrypt(user, base64.b64decode(key_file["data"])))
keys = (base64.b64decode(master["encrypt"]), base64.b64decode(master["mac"]["k"]),
        base64.b64decode(master["mac"]["r"]))
snapshots = os.path.join(repo, "snapshots")
# `restic cat snapshot` printed the seed's JSON; written back uncompressed, which restic
# reads in either repository version.
seed = json.load(open(sys.argv[4]))
start = datetime.datetime.now(datetime.timezone.utc)
for i in range(1, count):
    snapshot = dict(seed)
    snapshot["time"] = (start - datetime.timedelta(hours=i)).isoformat().replace("+00:00", "Z")
    snapshot["hostname"] = f"host-{i % 50:02d}"
    data = encrypt(keys, json.dumps(snapshot, separators=(",", ":")).encode())
    name = hashlib.sha256(data).hexdigest()
    with open(os.path.join(snapshots, name), "wb") as f:
        f.write(data)
PY
listed=$(restic snapshots --json --no-lock | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[[ $listed == "$COUNT" ]] || { echo "restic lists $listed snapshots, expected $COUNT" >&2; exit 1; }
restic check --quiet >/dev/null || { echo "restic check refuses the written snapshots" >&2; exit 1; }

cat >"$WORK/config.toml" <<TOML
[stage.bench]
kind = "restic"
repository = "$WORK/repo"
password_file = "$WORK/password"
paths = ["$WORK/tiny"]
host = "bench"
TOML
# A first stage run measures the sizes (none known yet); the timed runs refresh only the
# snapshots, as a backup does on all but one day.
"$BIN" --user --config "$WORK/config.toml" stage bench >/dev/null 2>&1

hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/hyperfine.json" \
	--command-name "restic snapshots --json (by hand)" "restic snapshots --json --no-lock >/dev/null" \
	--command-name "restic backup (direct)" "restic backup --quiet --host bench -- '$WORK/tiny' >/dev/null" \
	--command-name "backupctl stage (backup + figures)" "'$BIN' --user --config '$WORK/config.toml' stage bench >/dev/null 2>&1"

sizes_start=$(date +%s.%N)
restic stats --mode raw-data --json --no-lock >/dev/null
restic stats --mode restore-size --json --no-lock >/dev/null
sizes_end=$(date +%s.%N)

python3 - "$WORK/hyperfine.json" "$COUNT" "$sizes_start" "$sizes_end" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
listing, backup, stage = (r["mean"] for r in results)
refresh = stage - backup
print(f"\nfigures bench, {sys.argv[2]} snapshot files:")
print(f"  restic snapshots --json by hand: {listing:.2f} s")
print(f"  backup alone {backup:.2f} s, stage with the refresh {stage:.2f} s: the refresh costs {refresh:.2f} s")
print(f"  ratio refresh / snapshots by hand: {refresh / listing:.2f} (target about 1)")
print(f"  sizes (a check's or prune's extra, or once a day): {float(sys.argv[4]) - float(sys.argv[3]):.2f} s")
PY
