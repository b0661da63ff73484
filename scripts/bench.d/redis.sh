#!/usr/bin/env bash
# scripts/bench redis: drkit's Redis snapshots against redis-cli and
# redis-check-rdb, on one server's data, in one run: the fetch of an RDB
# into a repository (RdbSnapshot) against `redis-cli --rdb` to a file, the
# parse of that file with every value decoded (dr_redis::verify) against
# `redis-check-rdb`, and the bytes a second snapshot stores after 5% of the
# keys were rewritten against the second RDB file. The method, the figures
# and the environment variables that adjust it (DRKIT_BENCH_KEYS,
# DRKIT_BENCH_CHANGED, DRKIT_BENCH_REPEAT, DRKIT_BENCH_DIR) are in
# BENCHMARKS.md. Then the online restore of that snapshot into an empty
# server (RdbRestore, checking the whole snapshot first; and in one pass, for
# information) against `redis-cli --pipe` fed the same RESTORE commands.
# Needs redis-server, redis-cli, redis-check-rdb and GNU
# time (installed as root from Debian's packages); it downloads nothing
# else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

keys="${DRKIT_BENCH_KEYS:-1000000}"
changed="${DRKIT_BENCH_CHANGED:-0.05}"
repeat="${DRKIT_BENCH_REPEAT:-3}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bench="$target/release/redis_bench"
build_log="$target/bench-redis-build.log"

bench_name=redis
# shellcheck source=scripts/lib/bench.sh
source "$root/scripts/lib/bench.sh"

# --- prerequisites ---------------------------------------------------------

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v redis-cli && command -v redis-check-rdb; } >/dev/null 2>&1 || missing+=(redis-tools)
missing+=($(gnu_time_missing))
install_missing "${missing[@]}"
say "server: $(redis-server --version)"
say "peers: $(redis-cli --version), redis-check-rdb of the same package"
positive DRKIT_BENCH_KEYS "$keys"
positive DRKIT_BENCH_REPEAT "$repeat"
[[ "$changed" =~ ^0?\.[0-9]+$ ]] || die "DRKIT_BENCH_CHANGED must be a fraction such as 0.05 (it is '$changed')"
if [ "$keys" -lt 1000000 ]; then
  say "DRKIT_BENCH_KEYS=$keys is below 1000000: a quick check, not a result"
fi

build_bench redis_bench "$build_log"

# --- working directory and the server --------------------------------------

mkdir -p "$base"
work="$(mktemp -d "$base/drkit-bench-redis.XXXXXX")"
cd "$work"
repo="$work/drkit-repo"
DRKIT_PASSWORD="bench-$(date +%s%N)"
export DRKIT_PASSWORD
server_pid=""
target_pid=""

cleanup() {
  set +e
  for pid in $server_pid $target_pid; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  cd /
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port: a loopback port nothing listens on, chosen at random.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "found no free port on 127.0.0.1"
}

say "working in $work"
say "load before: $(uptime)"
port="$(free_port)"
mkdir "$work/redis"
# No saves of its own, no append-only file; a diskless transfer that starts
# at once (`repl-diskless-sync-delay 0`: the 5 s Redis waits by default for
# other replicas would be the same for both tools, and only hide the rest).
redis-server --port "$port" --bind 127.0.0.1 --dir "$work/redis" --save "" --appendonly no \
  --repl-diskless-sync-delay 0 --logfile "$work/redis/server.log" &
server_pid=$!
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$port" ping >/dev/null 2>&1 || die "Redis did not start: $(tail -n 5 "$work/redis/server.log")"
rcli() { redis-cli -p "$port" "$@"; }

# --- the data set ------------------------------------------------------------

say "loading $keys keys (strings, hashes, lists, sets, sorted sets, 16 streams; random values of 64 B to 16 KiB)"
"$bench" fill --port "$port" --keys "$keys" >"$work/fill.log" 2>&1 ||
  die "loading failed: $(tail -n 5 "$work/fill.log")"
say "  $(tail -n 1 "$work/fill.log")"
say "  $(rcli dbsize) keys, $(rcli info memory | grep '^used_memory_human:' | cut -d: -f2 | tr -d '\r') in use"

# --- (a) the fetch -------------------------------------------------------------

# Each run of ours goes into a new repository, created beforehand (its key
# derivation is not timed; opening it, with its own, is): every run stores
# the whole RDB, none finds it stored already. The tools take turns.
ours_snapshot() {
  rm -rf "$repo"
  "$bench" init --repo "$repo" >"$work/init.log" 2>&1 || die "creating the repository failed: $(cat "$work/init.log")"
  timed ours "$1" "$bench" snapshot --port "$port" --repo "$repo"
}
peer_fetch() { timed peer "$1" redis-cli -p "$port" --rdb "$2"; }

say "fetch: RdbSnapshot into a repository against redis-cli --rdb to a file, $repeat runs each, taking turns"
for i in $(seq "$repeat"); do
  if [ $((i % 2)) -eq 1 ]; then
    peer_fetch fetch "$work/first.rdb"
    ours_snapshot fetch
  else
    ours_snapshot fetch
    peer_fetch fetch "$work/first.rdb"
  fi
  say "  run $i: drkit ${seconds[ours.fetch]} s, redis-cli ${seconds[peer.fetch]} s"
done
rdb_bytes="$(stat -c %s "$work/first.rdb")"
ours_fetch="$(median "${runs[ours.fetch]}")"
peer_fetch_s="$(median "${runs[peer.fetch]}")"
# rate <count> <seconds> [<divisor>]: count per second, divided by the divisor.
rate() { awk -v n="$1" -v t="$2" -v d="${3:-1}" 'BEGIN { printf "%.0f", n / t / d }'; }
mbps() { rate "$rdb_bytes" "$1" 1e6; }
say "  RDB of $rdb_bytes bytes; medians: drkit $ours_fetch s ($(mbps "$ours_fetch") MB/s," \
  "$(rate "$keys" "$ours_fetch") keys/s), redis-cli $peer_fetch_s s ($(mbps "$peer_fetch_s") MB/s," \
  "$(rate "$keys" "$peer_fetch_s") keys/s)"
notes ours fetch
first_stored="$(stored "$repo")"
say "  the last run's repository: $first_stored bytes"

# --- (b) parsing ---------------------------------------------------------------

say "parse: dr_redis::verify against redis-check-rdb on the same file (in the page cache), $repeat runs each, taking turns"
for i in $(seq "$repeat"); do
  if [ $((i % 2)) -eq 1 ]; then
    timed peer parse redis-check-rdb "$work/first.rdb"
    timed ours parse "$bench" verify "$work/first.rdb"
  else
    timed ours parse "$bench" verify "$work/first.rdb"
    timed peer parse redis-check-rdb "$work/first.rdb"
  fi
done
grep -q "RDB looks OK" "$work/peer-parse.out" || die "redis-check-rdb did not accept the file: $(tail -n 5 "$work/peer-parse.out")"
ours_parse="$(median "${runs[ours.parse]}")"
peer_parse="$(median "${runs[peer.parse]}")"
say "  medians: drkit $ours_parse s ($(mbps "$ours_parse") MB/s, $(rate "$keys" "$ours_parse") keys/s)," \
  "redis-check-rdb $peer_parse s ($(mbps "$peer_parse") MB/s, $(rate "$keys" "$peer_parse") keys/s)"
notes ours parse

# --- (d) the online restore ------------------------------------------------------

# Into a second, empty server, emptied again before every run. The peer is
# fed the RESTORE commands drkit sends (written from the same RDB, untimed).
target_port="$(free_port)"
while [ "$target_port" = "$port" ]; do target_port="$(free_port)"; done
mkdir "$work/target"
redis-server --port "$target_port" --bind 127.0.0.1 --dir "$work/target" --save "" --appendonly no \
  --logfile "$work/target/server.log" &
target_pid=$!
for _ in $(seq 100); do
  redis-cli -p "$target_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$target_port" ping >/dev/null 2>&1 || die "the target Redis did not start: $(tail -n 5 "$work/target/server.log")"
tcli() { redis-cli -p "$target_port" "$@"; }
"$bench" restore-commands "$work/first.rdb" --out "$work/restore.resp" >"$work/commands.log" 2>&1 ||
  die "writing the RESTORE commands failed: $(tail -n 5 "$work/commands.log")"
say "restore: RdbRestore of the snapshot into an empty server against redis-cli --pipe of the same RESTORE commands, $repeat runs each, taking turns"
say "  $(tail -n 1 "$work/commands.log")"
ours_restore() { tcli flushall >/dev/null; timed ours "$1" "$bench" restore --port "$target_port" --repo "$repo" "${@:2}"; }
peer_restore() { tcli flushall >/dev/null; timed --in "$work/restore.resp" peer restore redis-cli -p "$target_port" --pipe; }
for i in $(seq "$repeat"); do
  if [ $((i % 2)) -eq 1 ]; then
    peer_restore
    ours_restore restore
  else
    ours_restore restore
    peer_restore
  fi
  say "  run $i: drkit ${seconds[ours.restore]} s ($(tcli dbsize) keys), redis-cli --pipe ${seconds[peer.restore]} s"
done
grep -q "errors: 0" "$work/peer-restore.out" || die "redis-cli --pipe reported errors: $(tail -n 3 "$work/peer-restore.out")"
ours_restore single --single-pass
restored_keys="$(tcli dbsize)"
ours_restore_s="$(median "${runs[ours.restore]}")"
peer_restore_s="$(median "${runs[peer.restore]}")"
say "  medians: drkit $ours_restore_s s ($(rate "$restored_keys" "$ours_restore_s") keys/s," \
  "$(mbps "$ours_restore_s") MB/s of RDB), redis-cli --pipe $peer_restore_s s" \
  "($(rate "$restored_keys" "$peer_restore_s") keys/s); drkit in one pass ${seconds[ours.single]} s" \
  "($(rate "$restored_keys" "${seconds[ours.single]}") keys/s)"
notes ours restore
tcli flushall >/dev/null
rm -f "$work/restore.resp"

# --- (c) a second snapshot after some keys changed --------------------------------

rm -f "$work/first.rdb"
say "second snapshot: $changed of the keys rewritten with new random values, then both tools once more"
"$bench" change --port "$port" --keys "$keys" --fraction "$changed" >"$work/change.log" 2>&1 ||
  die "rewriting keys failed: $(tail -n 5 "$work/change.log")"
say "  $(tail -n 1 "$work/change.log")"
timed ours second "$bench" snapshot --port "$port" --repo "$repo"
second_stored=$(($(stored "$repo") - first_stored))
peer_fetch second "$work/second.rdb"
second_rdb="$(stat -c %s "$work/second.rdb")"
say "  drkit stored $second_stored more bytes in ${seconds[ours.second]} s;" \
  "redis-cli wrote an RDB of $second_rdb bytes in ${seconds[peer.second]} s"
notes ours second
rm -f "$work/second.rdb"

line fetch_seconds "$ours_fetch" "$peer_fetch_s"
line fetch_peak_memory_bytes "${peak[ours.fetch]}" "${peak[peer.fetch]}"
line parse_seconds "$ours_parse" "$peer_parse"
line second_snapshot_stored_bytes "$second_stored" "$second_rdb"
line restore_seconds "$ours_restore_s" "$peer_restore_s"
line restore_seconds_single_pass "${seconds[ours.single]}" "$peer_restore_s"
