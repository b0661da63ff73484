#!/usr/bin/env bash
# scripts/bench redis-failover: drkit's automatic Redis failover (dr-core's
# Monitor over dr-redis's RedisFailover and ClusterFailover) against Redis
# Sentinel and Redis Cluster's own failover, and drkit's command archiver
# (CommandArchiver) against a plain replica, on servers on loopback, in one
# run.
#
# Method, (1) failover. Each round builds, for each tool in turn, fresh
# servers (Debian's redis-server and redis-sentinel, 127.0.0.1, free ports
# chosen at random, no saves or append-only file, `repl-diskless-sync-delay
# 0` so that the replicas' first sync does not wait 5 s):
#   ours              a master and two replicas, and `redis_failover_bench
#                     monitor`: a dr_core::Monitor over RedisFailover probing
#                     every 500 ms, each probe within 500 ms, failing over by
#                     itself after 3 failed probes in a row (the master
#                     silent for 1.0 to 1.5 s, at least Sentinel's tuned
#                     1000 ms: one slow or lost probe on a busy machine does
#                     not fail over), old_primary_known_dead, PauseWrites as
#                     the fence, the lease in a repository in memory;
#   sentinel_default  the same three servers and three sentinels (quorum 2)
#                     at Sentinel's default down-after-milliseconds 30000;
#   sentinel_tuned    the same with down-after-milliseconds 1000;
#   cluster_default   a Redis Cluster of three masters with a replica each
#                     (`redis-cli --cluster create`) at the default
#                     cluster-node-timeout 15000, failing over by itself;
#   cluster_tuned     the same with cluster-node-timeout 1000;
#   ours_cluster      the Cluster at the default 15000 and our monitor, with
#                     the settings of `ours`, over ClusterFailover scoped to
#                     the killed master's shard (shard_serving), which fails
#                     over with CLUSTER FAILOVER FORCE long before the
#                     Cluster's own 15 s.
# Then `redis_failover_bench write` writes through a client that follows
# the master as that kind of client does (ours: every node asked ROLE; for
# Sentinel: the sentinels asked SENTINEL GET-MASTER-ADDR-BY-NAME, the answer
# checked with ROLE; for a Cluster: MOVED followed and, when the node fails,
# CLUSTER SLOTS read again): every ~20 ms an SADD of the next id, each
# acknowledged id recorded with when its attempt began and ended, and on a
# connection of its own DRKIT_BENCH_RATE more SETs a second (200 bytes,
# pipelined every 10 ms), all on one hash tag, so on one shard of a Cluster.
# After DRKIT_BENCH_SECONDS of load and a random 0 to 999 ms more (so that
# the kill falls anywhere in each tool's probe period, not where the
# script's own timing would put it) the master (for a Cluster: the one
# serving that shard) is killed with SIGKILL. The failover time is from the
# kill to the end of the first acknowledged write whose attempt began after
# it, as the client sees it; the writer runs two seconds more, and the
# writes lost are the acknowledged ids the new master does not have. The
# servers are then torn down and the next tool's built. DRKIT_BENCH_REPEAT
# rounds (5 by default), the tools taking turns (each round starts with the
# next tool); the medians count, and the writes lost are summed over the
# rounds. A round in which no write succeeds within DRKIT_BENCH_TIMEOUT
# seconds (120) counts no time and says so, with the tool's last log lines.
#
# Method, (2) archiving lag. Each round, a fresh master and one plain
# replica; `redis_failover_bench archive` runs a CommandArchiver (a record
# every 200 ms, its default; segment journals in a local encrypted
# repository) on the master, waits until it follows, and writes
# DRKIT_BENCH_RATE SETs a second for DRKIT_BENCH_LAG_SECONDS. Every 10 ms it
# samples, in this order, the master's INFO replication (its
# master_repl_offset, and the offset the archiver acknowledged: the
# archiver acknowledges only what is durable, and the master shows it on
# the replica line with port=0, as the archiver advertises no port) and the
# replica's own INFO replication (slave_repl_offset: what it has applied in
# memory, read last, so never in our favour). Lag in seconds: for each
# sample taken under load, the time until the first sample at which the
# consumer's offset reached the master's offset of that sample, so the age
# of the newest write it did not have yet, resolved to the 10 ms of the
# sampling (as `scripts/bench postgres` measures WAL archiving). p50 and p99
# of each round; the medians over the rounds count. Both consumers are
# measured at once, so they need no turns.
#
# Prints last, for both: `name ours=<value> peer=<value> ratio=<ours/peer>`,
# lower is better (writes lost are counts, summed; their ratio is n/a where
# the peer lost none). This is a benchmark, not a test: nothing here fails
# on a slow figure.
#
# Environment: DRKIT_BENCH_REPEAT (5), DRKIT_BENCH_SECONDS (load before the
# kill, 5), DRKIT_BENCH_RATE (load writes a second, 5000),
# DRKIT_BENCH_TIMEOUT (120), DRKIT_BENCH_LAG_SECONDS (20),
# DRKIT_BENCH_ONLY (a space-separated subset of ours sentinel_default
# sentinel_tuned cluster_default cluster_tuned ours_cluster archive, for
# checking the script: not a result), DRKIT_BENCH_DIR (where the temporary
# directory goes, $TMPDIR or /tmp). Needs redis-server, redis-sentinel and
# redis-cli, installed as root from Debian's packages (redis-server,
# redis-sentinel, redis-tools); it downloads nothing else. Results on the
# development machine are in BENCHMARKS.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

repeat="${DRKIT_BENCH_REPEAT:-5}"
load_seconds="${DRKIT_BENCH_SECONDS:-5}"
rate="${DRKIT_BENCH_RATE:-5000}"
give_up="${DRKIT_BENCH_TIMEOUT:-120}"
lag_seconds="${DRKIT_BENCH_LAG_SECONDS:-20}"
only="${DRKIT_BENCH_ONLY:-}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bench="$target/release/redis_failover_bench"
build_log="$target/bench-redis-failover-build.log"

bench_name=redis-failover
# shellcheck source=scripts/lib/bench.sh
source "$root/scripts/lib/bench.sh"

# --- prerequisites ---------------------------------------------------------

positive DRKIT_BENCH_REPEAT "$repeat"
positive DRKIT_BENCH_SECONDS "$load_seconds"
positive DRKIT_BENCH_RATE "$rate"
positive DRKIT_BENCH_TIMEOUT "$give_up"
positive DRKIT_BENCH_LAG_SECONDS "$lag_seconds"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
install_missing "${missing[@]}"
say "server: $(redis-server --version)"
say "peers: Redis Sentinel and Redis Cluster of the same version, $(redis-cli --version)"

keys=(ours sentinel_default sentinel_tuned cluster_default cluster_tuned ours_cluster)
with_archive=1
if [ -n "$only" ]; then
  with_archive=0
  chosen=()
  for key in $only; do
    case " ${keys[*]} archive " in *" $key "*) ;; *) die "DRKIT_BENCH_ONLY: no part '$key' (${keys[*]} archive)" ;; esac
    if [ "$key" = archive ]; then with_archive=1; else chosen+=("$key"); fi
  done
  keys=("${chosen[@]}")
  say "DRKIT_BENCH_ONLY=$only: a check of the script, not a result"
fi

build_bench redis_failover_bench "$build_log"

# --- working directory and cleanup -----------------------------------------

mkdir -p "$base"
work="$(mktemp -d "$base/drkit-bench-redis-failover.XXXXXX")"
cd "$work"
DRKIT_PASSWORD="bench-$(date +%s%N)"
export DRKIT_PASSWORD

procs=()    # background processes of the round (servers, sentinels, monitor, writer)
round_dir=""

# teardown: ends everything the round started and removes its directory.
teardown() {
  [ -n "$round_dir" ] && touch "$round_dir/stop-writer" 2>/dev/null
  kill_tree "${procs[@]}"
  procs=()
  if [ -n "$round_dir" ]; then rm -rf "$round_dir"; fi
  round_dir=""
}

cleanup() {
  set +e
  teardown
  cd /
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "working in $work"
say "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# wait_for <seconds> <what> <command...>: until the command succeeds.
wait_for() {
  local seconds="$1" i
  shift 2
  for i in $(seq $((seconds * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

used_ports=" "
# free_port: sets $port to a loopback port that nothing listens on, nor on
# the port 10000 above it (a Cluster node's bus), chosen at random below
# the kernel's ephemeral ports (32768 and up: a client's connection may hold
# one), not yet given out in this round.
free_port() {
  for _ in $(seq 100); do
    port=$((10000 + RANDOM % 12700))
    case "$used_ports" in *" $port "* | *" $((port + 10000)) "* | *" $((port - 10000)) "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
      ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; then
      used_ports+="$port "
      return
    fi
  done
  die "found no free port on 127.0.0.1"
}

pong() { [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; }
# field <port> <section> <name>: one field of a server's INFO.
field() { redis-cli -p "$1" info "$2" 2>/dev/null | tr -d '\r' | sed -n "s/^$3://p"; }

# start_redis <name> [args...]: a server in $round_dir/<name> on a free
# port (another, up to three times, if that one was taken meanwhile); sets
# $port and $pid.
start_redis() {
  local name="$1" dir="$round_dir/$1" attempt
  shift
  mkdir -p "$dir"
  for attempt in 1 2 3; do
    free_port
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
      --repl-diskless-sync-delay 0 --logfile "$dir/server.log" "$@" </dev/null >/dev/null 2>&1 &
    pid=$!
    procs+=("$pid")
    wait_for 10 "$name" pong "$port" && return
    kill -0 "$pid" 2>/dev/null && break
  done
  die "Redis ($name) did not start: $(tail -n 5 "$dir/server.log")"
}

new_round() {
  round_dir="$work/$1"
  mkdir "$round_dir"
  used_ports=" "
}

# --- the tools' servers ------------------------------------------------------

# replicas_synced <master port> <count>: the master has that many replicas online.
replicas_synced() {
  local info
  info="$(redis-cli -p "$1" info replication 2>/dev/null | tr -d '\r')"
  [ "$(grep -c 'state=online' <<<"$info")" -ge "$2" ]
}

# standalone_up: a master and two replicas; their ports in $ports, the master's pid in $master_pid.
standalone_up() {
  start_redis n0
  ports=("$port")
  master_pid="$pid"
  for i in 1 2; do
    start_redis "n$i" --replicaof 127.0.0.1 "${ports[0]}"
    ports+=("$port")
  done
  wait_for 30 replicas replicas_synced "${ports[0]}" 2 || die "the replicas did not sync within 30 s"
  kill_node() { kill_tree "$master_pid"; }
  client=(--mode standalone --nodes "$(IFS=,; echo "${ports[*]}")")
}

# ours_up: the three servers and our monitor.
ours_up() {
  standalone_up
  "$bench" monitor --members "r0=${ports[0]},r1=${ports[1]},r2=${ports[2]}" \
    --interval-ms 500 --timeout-ms 500 --failures 3 >"$round_dir/monitor.out" 2>"$round_dir/monitor.err" &
  procs+=($!)
  wait_for 30 "the monitor" grep -qx ready "$round_dir/monitor.out" ||
    die "the monitor did not see the master within 30 s: $(tail -n 5 "$round_dir/monitor.err")"
  tool_log() { tail -n 15 "$round_dir/monitor.out" "$round_dir/monitor.err"; }
}

# sentinel_ready: every sentinel knows both replicas and the two other sentinels.
sentinel_ready() {
  local p info
  for p in "${sentinel_ports[@]}"; do
    info="$(redis-cli -p "$p" sentinel master mymaster 2>/dev/null | tr -d '\r')"
    [ "$(awk 'prev == "num-slaves" { print; exit } { prev = $0 }' <<<"$info")" = 2 ] || return 1
    [ "$(awk 'prev == "num-other-sentinels" { print; exit } { prev = $0 }' <<<"$info")" = 2 ] || return 1
  done
}

# sentinel_up <down-after-milliseconds>: the three servers and three sentinels.
sentinel_up() {
  local i dir
  standalone_up
  sentinel_ports=()
  for i in 0 1 2; do
    dir="$round_dir/s$i"
    mkdir "$dir"
    free_port
    sentinel_ports+=("$port")
    cat >"$dir/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
dir $dir
logfile $dir/sentinel.log
sentinel monitor mymaster 127.0.0.1 ${ports[0]} 2
sentinel down-after-milliseconds mymaster $1
EOF
    redis-sentinel "$dir/sentinel.conf" </dev/null >/dev/null 2>&1 &
    procs+=($!)
  done
  wait_for 60 sentinels sentinel_ready ||
    die "the sentinels did not find the replicas and each other within 60 s: $(tail -n 5 "$round_dir/s0/sentinel.log")"
  client=(--mode sentinel --nodes "$(IFS=,; echo "${sentinel_ports[*]}")")
  tool_log() { local i; for i in 0 1 2; do tail -n 5 "$round_dir/s$i/sentinel.log"; done; }
}

# cluster_ready: every node sees the cluster ok with six nodes, and every replica is in sync.
cluster_ready() {
  local p info
  for p in "${ports[@]}"; do
    info="$(redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r')"
    grep -qx 'cluster_state:ok' <<<"$info" || return 1
    grep -qx 'cluster_known_nodes:6' <<<"$info" || return 1
    if [ "$(field "$p" replication role)" = slave ]; then
      [ "$(field "$p" replication master_link_status)" = up ] || return 1
    fi
  done
}

# shard_known: sets shard_ports to the master serving the writer's key and
# its replicas, as the first node sees them, if it sees a replica.
shard_known() {
  read -r -a shard_ports <<<"$("$bench" shard --nodes "${ports[0]}" 2>/dev/null)"
  [ ${#shard_ports[@]} -ge 2 ]
}

# cluster_up <cluster-node-timeout>: three masters with a replica each.
cluster_up() {
  local i addrs=() shard
  ports=()
  declare -gA pids=()
  for i in 0 1 2 3 4 5; do
    start_redis "n$i" --cluster-enabled yes --cluster-config-file "$round_dir/n$i/nodes.conf" \
      --cluster-node-timeout "$1"
    ports+=("$port")
    pids[$port]="$pid"
    addrs+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$round_dir/create.log" 2>&1 || die "redis-cli --cluster create failed: $(tail -n 5 "$round_dir/create.log")"
  wait_for 60 "the cluster" cluster_ready || die "the cluster was not ok within 60 s"
  # The writer's shard, once the first node's slot map shows its replica.
  wait_for 30 "the writer's shard" shard_known ||
    die "no node named the writer's shard with its replica within 30 s: $("$bench" shard --nodes "${ports[0]}" 2>&1)"
  master_pid="${pids[${shard_ports[0]}]}"
  kill_node() { kill_tree "$master_pid"; }
  client=(--mode cluster --nodes "$(IFS=,; echo "${ports[*]}")")
  tool_log() { local i; for i in 0 1 2 3 4 5; do tail -n 3 "$round_dir/n$i/server.log"; done; }
}

# ours_cluster_up: the Cluster at the default node timeout and our monitor on the writer's shard.
ours_cluster_up() {
  cluster_up 15000
  "$bench" monitor --cluster "$(IFS=,; echo "${ports[*]}")" --shard "$(IFS=,; echo "${shard_ports[*]}")" \
    --interval-ms 500 --timeout-ms 500 --failures 3 >"$round_dir/monitor.out" 2>"$round_dir/monitor.err" &
  procs+=($!)
  wait_for 30 "the monitor" grep -qx ready "$round_dir/monitor.out" ||
    die "the monitor did not see the shard's master within 30 s: $(tail -n 5 "$round_dir/monitor.err")"
  tool_log() { tail -n 15 "$round_dir/monitor.out" "$round_dir/monitor.err"; }
}

# --- one failover round --------------------------------------------------------

declare -A times lost
# measure <key> <label>: load, kill, time and count on the servers just built.
measure() {
  local key="$1" label="$2" d="$round_dir" killed first took n_acked n_lost writer_pid check
  : >"$d/acked"
  "$bench" write "${client[@]}" --acked "$d/acked" --stop "$d/stop-writer" --load-rate "$rate" \
    </dev/null >/dev/null 2>"$d/writer.log" &
  procs+=($!)
  writer_pid=$!
  # A random 0 to 999 ms more, so that the kill falls anywhere in each tool's
  # probe period (ours 500 ms, Sentinel's pings 1 s): otherwise the script's
  # own timing fixes where, and with it the detection time.
  sleep "$load_seconds.$(printf '%03d' $((RANDOM % 1000)))"
  n_acked="$(wc -l <"$d/acked")"
  [ "$n_acked" -gt 0 ] || die "$label: the writer had no write acknowledged in $load_seconds s: $(tail -n 5 "$d/writer.log")"
  kill_node
  killed="$EPOCHREALTIME"
  first=""
  while :; do
    first="$(awk -v k="$killed" '$2 >= k { print $3; exit }' "$d/acked")"
    [ -n "$first" ] && break
    if awk -v k="$killed" -v now="$EPOCHREALTIME" -v t="$give_up" 'BEGIN { exit !(now - k > t) }'; then
      break
    fi
    sleep 0.05
  done
  [ -n "$first" ] && sleep 2
  touch "$d/stop-writer"
  wait "$writer_pid" 2>/dev/null || true
  if [ -z "$first" ]; then
    say "  $label: no write succeeded within $give_up s of the kill; no time counted. Its last log lines:"
    while IFS= read -r note; do say "    $note"; done < <(tool_log 2>&1)
    return
  fi
  took="$(awk -v a="$killed" -v b="$first" 'BEGIN { printf "%.2f", b - a }')"
  times[$key]="${times[$key]:-} $took"
  check="$("$bench" check "${client[@]}" --acked "$d/acked" 2>"$d/check.log")" ||
    die "$label: reading the acknowledged writes back failed: $(tail -n 3 "$d/check.log")"
  read -r n_lost n_acked <<<"$check"
  lost[$key]=$((${lost[$key]:-0} + n_lost))
  say "  $label: first write on the new master $took s after the kill; $n_lost of $n_acked acknowledged writes lost"
  case "$key" in
    ours | ours_cluster)
      if grep -q -e 'failed over' -e 'failover failed' "$d/monitor.out"; then
        grep -m 1 -e 'failed over' -e 'failover failed' "$d/monitor.out" |
          while IFS= read -r note; do say "    monitor: $note"; done
      else
        say "    (the monitor says nothing of a failover)"
      fi
      ;;
  esac
}

# round <key> <label>: builds the tool's servers, measures, tears them down.
round() {
  local key="$1" label="$2"
  new_round "$key-$r"
  case "$key" in
    ours) ours_up ;;
    sentinel_default) sentinel_up 30000 ;;
    sentinel_tuned) sentinel_up 1000 ;;
    cluster_default) cluster_up 15000 ;;
    cluster_tuned) cluster_up 1000 ;;
    ours_cluster) ours_cluster_up ;;
  esac
  measure "$key" "$label"
  teardown
}

declare -A labels=([ours]="drkit (monitor, 500 ms probes, 3 failures)"
  [sentinel_default]="Sentinel (down-after-milliseconds 30000)"
  [sentinel_tuned]="Sentinel (down-after-milliseconds 1000)"
  [cluster_default]="Cluster (cluster-node-timeout 15000)"
  [cluster_tuned]="Cluster (cluster-node-timeout 1000)"
  [ours_cluster]="drkit on a Cluster (cluster-node-timeout 15000; monitor on the shard)")
if [ ${#keys[@]} -gt 0 ]; then
  say "failover: $repeat rounds, the tools taking turns: fresh servers each, the writer and $rate more" \
    "writes a second for $load_seconds s, then the master killed"
  for r in $(seq "$repeat"); do
    say "round $r (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    n=${#keys[@]}
    for i in $(seq 0 $((n - 1))); do
      key="${keys[$(((i + r - 1) % n))]}"
      round "$key" "${labels[$key]}"
    done
  done
fi

# --- archiving lag ---------------------------------------------------------------

declare -A lag_runs
if [ "$with_archive" = 1 ]; then
  say "archiving lag: CommandArchiver and a plain replica on one master, $rate writes a second for" \
    "$lag_seconds s, sampled every 10 ms; $repeat rounds"
  for r in $(seq "$repeat"); do
    new_round "archive-$r"
    start_redis master
    master_port="$port"
    start_redis replica --replicaof 127.0.0.1 "$master_port"
    wait_for 30 replica replicas_synced "$master_port" 1 || die "the replica did not sync within 30 s"
    mkdir "$round_dir/repo"
    "$bench" archive --port "$master_port" --replica "$port" --repo "$round_dir/repo" \
      --seconds "$lag_seconds" --rate "$rate" >"$round_dir/lag.out" 2>"$round_dir/archive.log" ||
      die "the archive run failed: $(tail -n 5 "$round_dir/archive.log")"
    # name p50 p99 max samples unresolved
    while read -r name p50 p99 max count unresolved; do
      lag_runs[$name.p50]="${lag_runs[$name.p50]:-} $p50"
      lag_runs[$name.p99]="${lag_runs[$name.p99]:-} $p99"
      say "  round $r, $name: lag p50 $p50 s, p99 $p99 s, max $max s ($count samples, $unresolved unresolved)"
    done <"$round_dir/lag.out"
    while IFS= read -r note; do say "    $note"; done <"$round_dir/archive.log"
    teardown
  done
fi

say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for key in "${keys[@]}"; do
  say "${labels[$key]}: failover seconds${times[$key]:- (none)}; writes lost in all: ${lost[$key]:-0}"
done

# lost_line <name> <ours> <peer>: like `line`, for counts, where the peer may have lost none.
lost_line() {
  if [ "$3" -gt 0 ]; then
    line "$1" "$2" "$3"
  else
    echo "$1 ours=$2 peer=$3 ratio=n/a"
  fi
}
result() {
  case " ${keys[*]} " in *" $2 "*) ;; *) return 0 ;; esac
  case " ${keys[*]} " in *" $3 "*) ;; *) return 0 ;; esac
  if [ -n "${times[$2]:-}" ] && [ -n "${times[$3]:-}" ]; then
    line "$1" "$(median "${times[$2]}")" "$(median "${times[$3]}")"
  else
    say "no $1: a tool failed over in no round"
  fi
}
lost_result() {
  case " ${keys[*]} " in *" $2 "*) ;; *) return 0 ;; esac
  case " ${keys[*]} " in *" $3 "*) ;; *) return 0 ;; esac
  lost_line "$1" "${lost[$2]:-0}" "${lost[$3]:-0}"
}
result failover_seconds_vs_sentinel_tuned ours sentinel_tuned
result failover_seconds_vs_sentinel_default ours sentinel_default
result cluster_failover_seconds_vs_cluster_tuned ours_cluster cluster_tuned
result cluster_failover_seconds_vs_cluster_default ours_cluster cluster_default
lost_result lost_writes_vs_sentinel_tuned ours sentinel_tuned
lost_result lost_writes_vs_sentinel_default ours sentinel_default
lost_result cluster_lost_writes_vs_cluster_tuned ours_cluster cluster_tuned
lost_result cluster_lost_writes_vs_cluster_default ours_cluster cluster_default
if [ "$with_archive" = 1 ]; then
  line archive_lag_p50_seconds "$(median "${lag_runs[ours.p50]}")" "$(median "${lag_runs[replica.p50]}")"
  line archive_lag_p99_seconds "$(median "${lag_runs[ours.p99]}")" "$(median "${lag_runs[replica.p99]}")"
fi
exit 0
