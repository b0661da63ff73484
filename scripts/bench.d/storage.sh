#!/usr/bin/env bash
# scripts/bench storage: drkit's repository against restic, on the same data,
# in one run. The method, the figures and the environment variables that
# adjust it (DRKIT_BENCH_SIZE, DRKIT_BENCH_REPEAT, DRKIT_BENCH_DIR) are in
# BENCHMARKS.md. Needs restic 0.14 or newer and GNU time (installed as root
# from Debian's packages); it downloads nothing else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

gib=1073741824
size="${DRKIT_BENCH_SIZE:-$gib}"
repeat="${DRKIT_BENCH_REPEAT:-3}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
bench="$target/release/storage_bench"
build_log="$target/bench-storage-build.log"

bench_name=storage
# shellcheck source=scripts/lib/bench.sh
source "$root/scripts/lib/bench.sh"

# --- prerequisites ---------------------------------------------------------

check_restic() {
  local version
  version="$(restic version)"
  say "peer: $version"
  # Compression (repository format 2) arrived in restic 0.14.
  if ! [[ "$version" =~ ^restic\ ([0-9]+)\.([0-9]+) ]] ||
    { [ "${BASH_REMATCH[1]}" -eq 0 ] && [ "${BASH_REMATCH[2]}" -lt 14 ]; }; then
    die "restic 0.14 or newer is needed (for compressed repositories); found: $version"
  fi
}

missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
missing+=($(gnu_time_missing))
install_missing "${missing[@]}"
check_restic
positive DRKIT_BENCH_SIZE "$size"
positive DRKIT_BENCH_REPEAT "$repeat"
if [ "$size" -lt "$gib" ]; then
  say "DRKIT_BENCH_SIZE=$size is below 1 GiB: a quick check, not a result"
fi

build_bench storage_bench "$build_log"

# --- working directory -----------------------------------------------------

mkdir -p "$base"
work="$(mktemp -d "$base/drkit-bench-storage.XXXXXX")"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
data="$work/data.bin"
ours_repo="$work/drkit-repo"
peer_repo="$work/restic-repo"
DRKIT_PASSWORD="bench-$(date +%s%N)"
RESTIC_PASSWORD="$DRKIT_PASSWORD"
export DRKIT_PASSWORD RESTIC_PASSWORD
restic=(restic --repo "$peer_repo" --cache-dir "$work/restic-cache")

say "load before: $(uptime)"

# --- measuring -------------------------------------------------------------

# report <phase> <label>: tells how one phase went for both tools.
report() {
  local phase="$1" label="$2"
  say "$label: drkit${runs[ours.$phase]} s (median $(median "${runs[ours.$phase]}"));" \
    "restic${runs[peer.$phase]} s (median $(median "${runs[peer.$phase]}"))"
  local note
  while IFS= read -r note; do say "  drkit (last run):  $note"; done <"$work/ours-$phase.err"
}

ours_backup() { timed --in "$2" ours "$1" "$bench" backup --repo "$ours_repo"; }
peer_backup() {
  timed --in "$2" peer "$1" "${restic[@]}" backup --stdin --stdin-filename data.bin
}
peer_init() {
  "${restic[@]}" init --repository-version 2 >"$work/peer-init.out" 2>&1 ||
    die "restic init failed: $(cat "$work/peer-init.out")"
}

# --- the run ---------------------------------------------------------------

say "working in $work; every phase runs $repeat times per tool"
say "generating $size bytes of data"
"$bench" generate --size "$size" --seed 1 "$data"

for ((run = 1; run <= repeat; run++)); do
  rm -rf "$ours_repo" "$peer_repo" "$work/restic-cache"
  ours_backup first "$data"
  peer_init
  peer_backup first "$data"
done
report first "first backup (each into a new repository)"
say "  restic: $(grep -m1 'Added to the repository' "$work/peer-first.out" || true)"

for ((run = 1; run <= repeat; run++)); do
  ours_backup unchanged "$data"
  peer_backup unchanged "$data"
done
report unchanged "unchanged backup"

changed="$work/changed.bin"
for ((run = 1; run <= repeat; run++)); do
  cp "$data" "$changed"
  "$bench" mutate --fraction 0.05 --seed $((run + 1)) "$changed" >/dev/null
  ours_backup changed "$changed"
  peer_backup changed "$changed"
  if [ "$run" -eq 1 ]; then
    ours_stored="$(stored "$ours_repo")"
    peer_stored="$(stored "$peer_repo")"
  fi
done
report changed "backup after 5% of the data changed (each change its own 5%)"
say "  restic (last run): $(grep -m1 'Added to the repository' "$work/peer-changed.out" || true)"
say "  after the first, an unchanged and a changed backup: drkit $ours_stored bytes, restic $peer_stored bytes"

want="$(sha256sum <"$changed" | cut -d' ' -f1)"
check_restored() {
  local got
  got="$(sha256sum <"$work/$1-restored" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || die "$1 restored other bytes: sha256 $got, expected $want"
  rm -f "$work/$1-restored"
}
for ((run = 1; run <= repeat; run++)); do
  timed --out "$work/ours-restored" ours restore "$bench" restore --repo "$ours_repo"
  check_restored ours
  timed --out "$work/peer-restored" peer restore "${restic[@]}" dump latest /data.bin
  check_restored peer
done
report restore "restore of the latest snapshot"
say "every restore matches its data's SHA-256"
say "peak memory: drkit $(mib "${peak[ours]}"), restic $(mib "${peak[peer]}")"
say "load after: $(uptime)"

both() { line "$1" "$(median "${runs[ours.$2]}")" "$(median "${runs[peer.$2]}")"; }

both first_backup_seconds first
both unchanged_backup_seconds unchanged
both changed_backup_seconds changed
both restore_seconds restore
line stored_bytes "$ours_stored" "$peer_stored"
line peak_memory_bytes "${peak[ours]}" "${peak[peer]}"
