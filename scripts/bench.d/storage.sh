#!/usr/bin/env bash
# scripts/bench storage: drkit's repository against restic, on the same data,
# in one run.
#
# Generates a data set (half text-like, half random; DRKIT_BENCH_SIZE bytes,
# 1 GiB by default) and hands it to both tools as one stream on standard
# input, the way a database dump arrives (restic: `backup --stdin`), so
# neither can skip work by looking at file times. Both write to local
# repositories, encrypted and compressed (restic: repository format 2, its
# default `--compression auto`). In order, for each tool:
#   1. first backup
#   2. unchanged second backup
#   3. backup after about 5% of the data was overwritten in place
#   4. restore of the latest snapshot to a file, checked against the data's SHA-256
# Each run is timed by GNU time (wall seconds, peak resident memory), the same
# way for both, including everything a user waits for: key derivation, index
# loading, fsync. Every phase runs DRKIT_BENCH_REPEAT times per tool (3 by
# default), the tools taking turns, and its time is the median: single runs on
# a small machine vary by a third and more. Each first backup goes into a new
# repository; each changed backup overwrites 5% of the original data with a
# seed of its own, so every one finds 5% new against what is stored; each
# restore is of the latest snapshot, checked against its data's SHA-256.
# Stored bytes are `du -sb` of each repository after the first backup, an
# unchanged one and a changed one; peak memory is the highest of all of a
# tool's runs (each run's figures are on standard error).
#
# Environment:
#   DRKIT_BENCH_SIZE    bytes of data (default 1073741824; less is for quick checks only)
#   DRKIT_BENCH_REPEAT  runs of each phase per tool (default 3; the median counts)
#   DRKIT_BENCH_DIR     where the temporary working directory goes (default $TMPDIR or /tmp)
#
# Needs restic 0.14 or newer and GNU time; as root it installs missing ones
# from Debian's packages (`apt-get install restic time`), otherwise it names
# them and stops. It downloads nothing else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

gib=1073741824
size="${DRKIT_BENCH_SIZE:-$gib}"
repeat="${DRKIT_BENCH_REPEAT:-3}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
bench="$target/release/examples/storage_bench"
build_log="$target/bench-storage-build.log"

say() { printf 'bench storage: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# --- prerequisites ---------------------------------------------------------

install_missing() {
  local missing=()
  command -v restic >/dev/null 2>&1 || missing+=(restic)
  /usr/bin/time --version 2>&1 | grep -q GNU || missing+=(time)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing: ${missing[*]}. Install them (on Debian: sudo apt-get install -y ${missing[*]}) and run again."
  fi
  say "installing from Debian's packages: ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2; then
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
  fi
}

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

install_missing
check_restic
[[ "$size" =~ ^[0-9]+$ ]] && [ "$size" -gt 0 ] || die "DRKIT_BENCH_SIZE must be a number of bytes"
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "DRKIT_BENCH_REPEAT must be a number of runs, 1 or more"
if [ "$size" -lt "$gib" ]; then
  say "DRKIT_BENCH_SIZE=$size is below 1 GiB: a quick check, not a result"
fi

say "building the example (release; log: $build_log)"
mkdir -p "$target"
if ! cargo build --release -p dr-storage --example storage_bench --locked >"$build_log" 2>&1; then
  tail -n 30 "$build_log" >&2
  die "the build failed; see $build_log"
fi

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

declare -A seconds memory
# timed <tool> <phase> <stdin> <stdout> <command...>: runs the command under GNU
# time and records its wall seconds (appended to the phase's list) and peak
# memory; its standard error goes to $work/<tool>-<phase>.err.
timed() {
  local tool="$1" phase="$2" input="$3" output="$4"
  shift 4
  local stats="$work/$tool-$phase.time" err="$work/$tool-$phase.err" secs kib
  if ! /usr/bin/time -f '%e %M' -o "$stats" "$@" <"$input" >"$output" 2>"$err"; then
    tail -n 20 "$err" >&2
    die "$tool $phase failed: $*"
  fi
  read -r secs kib <"$stats"
  seconds[$tool.$phase]="${seconds[$tool.$phase]:-} $secs"
  local bytes=$((kib * 1024))
  [ "$bytes" -gt "${memory[$tool]:-0}" ] && memory[$tool]="$bytes"
  return 0
}

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END {
  print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
stored() { du -sb "$1" | cut -f1; }

# report <phase> <label>: tells how one phase went for both tools.
report() {
  local phase="$1" label="$2"
  say "$label: drkit${seconds[ours.$phase]} s (median $(median "${seconds[ours.$phase]}"));" \
    "restic${seconds[peer.$phase]} s (median $(median "${seconds[peer.$phase]}"))"
  local note
  while IFS= read -r note; do say "  drkit (last run):  $note"; done <"$work/ours-$phase.err"
}

ours_backup() { timed ours "$1" "$2" "$work/ours-$1.out" "$bench" backup --repo "$ours_repo"; }
peer_backup() {
  timed peer "$1" "$2" "$work/peer-$1.out" "${restic[@]}" backup --stdin --stdin-filename data.bin
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
  timed ours restore /dev/null "$work/ours-restored" "$bench" restore --repo "$ours_repo"
  check_restored ours
  timed peer restore /dev/null "$work/peer-restored" "${restic[@]}" dump latest /data.bin
  check_restored peer
done
report restore "restore of the latest snapshot"
say "every restore matches its data's SHA-256"
say "peak memory: drkit $(mib "${memory[ours]}"), restic $(mib "${memory[peer]}")"
say "load after: $(uptime)"

line() {
  awk -v name="$1" -v ours="$2" -v peer="$3" 'BEGIN {
    ratio = (peer > 0) ? sprintf("%.2f", ours / peer) : "inf"
    printf "%s ours=%s peer=%s ratio=%s\n", name, ours, peer, ratio
  }'
}
both() { line "$1" "$(median "${seconds[ours.$2]}")" "$(median "${seconds[peer.$2]}")"; }

both first_backup_seconds first
both unchanged_backup_seconds unchanged
both changed_backup_seconds changed
both restore_seconds restore
line stored_bytes "$ours_stored" "$peer_stored"
line peak_memory_bytes "${memory[ours]}" "${memory[peer]}"
