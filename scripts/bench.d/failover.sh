#!/usr/bin/env bash
# scripts/bench failover: drkit's automatic PostgreSQL failover (the monitor
# `drkit agent` runs for a [component.failover] with `automatic`) against
# Patroni, at its defaults and tuned to its documented minimum, and against
# pg_auto_failover, on three-node clusters on loopback, in one run.
#
# Method. Each round builds, for each tool in turn, a fresh cluster of a
# primary and two asynchronous streaming replicas (PostgreSQL from
# `pg_config --bindir`, 127.0.0.1, distinct ports, wal_log_hints on):
#   drkit            three servers started here (initdb, `pg_basebackup -R`),
#                    a local repository (`drkit init`) and `drkit agent`
#                    (release build) whose config has the cluster's three
#                    members, loss_limit = "16MB", fence_command = /bin/true
#                    (the kill below is the fence) and automatic = { interval
#                    = "1s", timeout = "1s", failures = 3 }; the round starts
#                    once /metrics shows drkit_cluster_primary_up 1;
#   patroni_default  Debian's Patroni (etcd3 against one private etcd), three
#                    nodes, use_pg_rewind, ttl 30, loop_wait 10, retry_timeout
#                    10 (Patroni's defaults);
#   patroni_tuned    the same with ttl 20, loop_wait 2, retry_timeout 5 (ttl's
#                    documented minimum, loop_wait + 2 * retry_timeout <= ttl);
#   pg_auto_failover Debian's pg_autoctl: a monitor and three nodes, at its
#                    defaults (which make the replicas synchronous: the tools
#                    above run them asynchronous); DRKIT_BENCH_PGAF=0
#                    leaves it out;
#   drkit_sync       drkit as above with synchronous replication:
#                    synchronous_standby_names = 'ANY 1 (*)' on every server
#                    (ALTER SYSTEM), so every commit waits for one replica;
#   patroni_sync     Patroni tuned as above with synchronous_mode: true (it
#                    names one synchronous standby and promotes only it).
#                    DRKIT_BENCH_SYNC=0 leaves these two out.
# Then pgbench (-c 2 -j 1, scale DRKIT_BENCH_SCALE) and a writer loop run
# against the primary through one libpq multi-host connection string
# (target_session_attrs=read-write, connect_timeout=1): every ~50 ms the
# writer inserts the next id into a table of its own with psql and records
# each acknowledged id. After DRKIT_BENCH_SECONDS of load the primary's node
# is killed with SIGKILL, everything on it at once: for drkit the primary's
# postmaster and its children (the agent is not on that node); for Patroni
# and pg_auto_failover the leader's Patroni (or pg_autoctl) process with its
# postmaster and all their children (either restarts a server killed alone).
# The failover time is from the kill to the end of the first acknowledged
# insert that began after it (so, on the new primary), as the same client
# sees it; the writer then runs two seconds more, and the lost transactions
# are the acknowledged ids missing on the new primary. The cluster is then
# torn down and the next tool's built. DRKIT_BENCH_REPEAT rounds (5 by
# default), the tools taking turns; the medians count. A round in which no
# write succeeds within DRKIT_BENCH_TIMEOUT seconds (120 by default) counts
# no time and says so, with the tool's last log lines. This is a benchmark,
# not a test: nothing here fails on a slow figure.
#
# Environment: DRKIT_BENCH_REPEAT (5), DRKIT_BENCH_SECONDS (load before the
# kill, 10), DRKIT_BENCH_SCALE (pgbench's scale, 5), DRKIT_BENCH_TIMEOUT
# (120), DRKIT_BENCH_SYNC (1; 0 leaves the synchronous pair out),
# DRKIT_BENCH_PORT (first of the ports used, 26400: PostgreSQL
# base+1..3, Patroni's REST API base+11..13, etcd base+20..21, the
# pg_auto_failover monitor base+30), DRKIT_BENCH_PGAF (1; 0 leaves
# pg_auto_failover out), DRKIT_BENCH_ONLY (a space-separated subset of
# drkit patroni_default patroni_tuned pgaf drkit_sync patroni_sync, for checking the script: not a
# result), DRKIT_BENCH_DIR (where the temporary directory
# goes, $TMPDIR or /tmp). Needs PostgreSQL 15 or newer, Patroni, etcd,
# pg_auto_failover and curl, installed as root from Debian's packages
# (patroni, etcd-server, postgresql-15-auto-failover, curl); it downloads
# nothing else. Results on the development machine are in BENCHMARKS.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

repeat="${DRKIT_BENCH_REPEAT:-5}"
load_seconds="${DRKIT_BENCH_SECONDS:-10}"
scale="${DRKIT_BENCH_SCALE:-5}"
give_up="${DRKIT_BENCH_TIMEOUT:-120}"
port_base="${DRKIT_BENCH_PORT:-26400}"
with_pgaf="${DRKIT_BENCH_PGAF:-1}"
with_sync="${DRKIT_BENCH_SYNC:-1}"
only="${DRKIT_BENCH_ONLY:-}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
drkit="$target/release/drkit"

bench_name=failover
# shellcheck source=scripts/lib/bench.sh
source "$root/scripts/lib/bench.sh"

# --- prerequisites ---------------------------------------------------------

positive DRKIT_BENCH_REPEAT "$repeat"
positive DRKIT_BENCH_SECONDS "$load_seconds"
positive DRKIT_BENCH_SCALE "$scale"
positive DRKIT_BENCH_TIMEOUT "$give_up"
positive DRKIT_BENCH_PORT "$port_base"
case "$with_pgaf" in 0 | 1) ;; *) die "DRKIT_BENCH_PGAF must be 0 or 1 (it is '$with_pgaf')" ;; esac
case "$with_sync" in 0 | 1) ;; *) die "DRKIT_BENCH_SYNC must be 0 or 1 (it is '$with_sync')" ;; esac

missing=()
[ -n "$(find_pg_bin)" ] || missing+=(postgresql)
command -v patroni >/dev/null 2>&1 || missing+=(patroni)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "$with_pgaf" = 1 ] && ! command -v pg_autoctl >/dev/null 2>&1; then
  missing+=(postgresql-15-auto-failover)
fi
install_missing "${missing[@]}"
pgbin="$(find_pg_bin)" || die "PostgreSQL's programs were not found (pg_config --bindir, /usr/lib/postgresql/*/bin)"
for tool in initdb pg_ctl psql pgbench pg_basebackup pg_rewind; do
  [ -x "$pgbin/$tool" ] || die "$pgbin/$tool is missing"
done
pg_major="$("$pgbin/psql" --version | sed -E 's/.* ([0-9]+)[.0-9]*.*/\1/')"
[ "$pg_major" -ge 15 ] 2>/dev/null || die "PostgreSQL 15 or newer is needed; found $("$pgbin/psql" --version)"
say "PostgreSQL: $("$pgbin/psql" --version | sed 's/^psql (PostgreSQL) //')"
say "peers: $(patroni --version), etcd $(etcd --version | sed -n 's/^etcd Version: //p')$(
  [ "$with_pgaf" = 1 ] && echo ", $(pg_autoctl --version 2>&1 | head -n 1)")"

# As root, PostgreSQL, Patroni and pg_autoctl run as the postgres OS user.
pg_user=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "there is no postgres user (Debian's postgresql package creates it)"
  pg_user=(setpriv "--reuid=$(id -u postgres)" "--regid=$(id -g postgres)" --init-groups --)
fi
as_pg() { "${pg_user[@]}" "$@"; }
give() { if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$@"; fi; }

keys=(drkit patroni_default patroni_tuned)
[ "$with_pgaf" = 1 ] && keys+=(pgaf)
[ "$with_sync" = 1 ] && keys+=(drkit_sync patroni_sync)
if [ -n "$only" ]; then
  for key in $only; do
    case " ${keys[*]} " in *" $key "*) ;; *) die "DRKIT_BENCH_ONLY: no tool '$key' (${keys[*]})" ;; esac
  done
  keys=($only)
  say "DRKIT_BENCH_ONLY=$only: a check of the script, not a result"
fi
case " ${keys[*]} " in *" drkit "* | *" drkit_sync "*) build_drkit "$target/bench-failover-build-drkit.log" ;; esac

# --- working directory and cleanup -----------------------------------------

mkdir -p "$base"
work="$(mktemp -d "$base/drkit-bench-failover.XXXXXX")"
chmod 755 "$work"
cd "$work"

pg_ports=($((port_base + 1)) $((port_base + 2)) $((port_base + 3)))
rest_ports=($((port_base + 11)) $((port_base + 12)) $((port_base + 13)))
etcd_port=$((port_base + 20))
etcd_peer_port=$((port_base + 21))
monitor_port=$((port_base + 30))
multihost="host=127.0.0.1,127.0.0.1,127.0.0.1 port=${pg_ports[0]},${pg_ports[1]},${pg_ports[2]} user=postgres dbname=postgres target_session_attrs=read-write"

procs=()    # background processes started here (agent, etcd, Patroni, pg_autoctl, pgbench, writer)
round_dir=""

# postmasters <dir>: the postmasters whose data directories are under <dir>.
postmasters() {
  local file
  while IFS= read -r file; do
    head -n 1 "$file" 2>/dev/null || true
  done < <(find "$1" -name postmaster.pid 2>/dev/null)
}

# teardown: ends everything this round started and removes its directory.
teardown() {
  local pid
  [ -n "$round_dir" ] && touch "$round_dir/stop-writer" 2>/dev/null
  kill_tree "${procs[@]}"
  if [ -n "$round_dir" ] && [ -d "$round_dir" ]; then
    # The postmasters that pg_ctl started are nobody's child here.
    kill_tree $(postmasters "$round_dir")
    for _ in $(seq 50); do
      pid=""
      for pid in $(postmasters "$round_dir"); do kill -0 "$pid" 2>/dev/null && break; pid=""; done
      [ -z "$pid" ] && break
      sleep 0.1
    done
  fi
  for pid in "${procs[@]}"; do wait "$pid" 2>/dev/null || true; done
  procs=()
  if [ -n "$round_dir" ]; then rm -rf "$round_dir"; fi
  round_dir=""
}

cleanup() {
  set +e
  teardown
  kill_tree $(postmasters "$work")
  cd /
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -eq 0 ]; then
  as_pg test -x "$work" ||
    die "the postgres user cannot enter $work; point DRKIT_BENCH_DIR at a directory it can reach"
fi
for port in "${pg_ports[@]}" "${rest_ports[@]}" "$etcd_port" "$etcd_peer_port" "$monitor_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is taken; choose another DRKIT_BENCH_PORT"
  fi
done
say "working in $work"
say "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# new_round <name>: a fresh directory for one tool's cluster, the postgres user's.
new_round() {
  round_dir="$work/$1"
  mkdir -m 755 "$round_dir"
  give "$round_dir"
}

# sql_at <port> <sql>: one statement on one server.
sql_at() { "$pgbin/psql" -X -q -At -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }
# sql_primary <sql>: one statement on whichever server takes writes.
sql_primary() { "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 "$multihost connect_timeout=2" -c "$1"; }

# wait_for <seconds> <what> <command...>: until the command succeeds.
wait_for() {
  local seconds="$1" what="$2" i
  shift 2
  for i in $(seq $((seconds * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# replicas_streaming <port>: the server on <port> takes writes and two replicas stream from it.
replicas_streaming() {
  [ "$(sql_at "$1" "SELECT CASE WHEN pg_is_in_recovery() THEN -1 ELSE (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming') END")" = 2 ]
}

# synchronous_replicas <port>: the server on <port> waits for a replica on each commit.
synchronous_replicas() {
  [ "$(sql_at "$1" "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")" -ge 1 ]
}

# caught_up: every replica has replayed what the primary has written.
caught_up() {
  [ "$(sql_primary "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= pg_current_wal_lsn()")" = 2 ]
}

# --- drkit -----------------------------------------------------------------

# drkit_up [sync]: the cluster, the repository and the agent; with `sync`,
# every commit waits for one replica.
drkit_up() {
  local d="$round_dir" i n
  for i in 0 1 2; do as_pg mkdir -m 700 "$d/n$i"; done
  as_pg "$pgbin/initdb" -D "$d/n0/data" -U postgres -E UTF8 --locale=C --auth=trust \
    >"$d/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$d/initdb.log")"
  cat >>"$d/n0/data/postgresql.conf" <<EOF

# scripts/bench failover
listen_addresses = '127.0.0.1'
port = ${pg_ports[0]}
unix_socket_directories = '$d/n0'
wal_level = replica
wal_log_hints = on
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
shared_buffers = 32MB
log_line_prefix = '%m [%p] '
EOF
  as_pg "$pgbin/pg_ctl" -D "$d/n0/data" -l "$d/n0/server.log" -w -t 60 start >/dev/null ||
    die "PostgreSQL did not start: $(tail -n 10 "$d/n0/server.log")"
  for i in 1 2; do
    as_pg "$pgbin/pg_basebackup" -h 127.0.0.1 -p "${pg_ports[0]}" -U postgres -D "$d/n$i/data" \
      -R -X stream -c fast >"$d/n$i/basebackup.log" 2>&1 ||
      die "pg_basebackup failed: $(tail -n 5 "$d/n$i/basebackup.log")"
    printf "port = %s\nunix_socket_directories = '%s'\n" "${pg_ports[$i]}" "$d/n$i" \
      >>"$d/n$i/data/postgresql.conf"
    as_pg "$pgbin/pg_ctl" -D "$d/n$i/data" -l "$d/n$i/server.log" -w -t 60 start >/dev/null ||
      die "the replica did not start: $(tail -n 10 "$d/n$i/server.log")"
  done
  wait_for 60 streaming replicas_streaming "${pg_ports[0]}" ||
    die "the replicas did not stream within a minute"
  if [ "${1:-}" = sync ]; then
    # On every server, so that the promoted one keeps it (set once the
    # replicas stream, or the first commits would wait for none).
    for i in 0 1 2; do
      sql_at "${pg_ports[$i]}" "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'" >/dev/null
      sql_at "${pg_ports[$i]}" "SELECT pg_reload_conf()" >/dev/null
    done
    wait_for 30 "synchronous replicas" synchronous_replicas "${pg_ports[0]}" ||
      die "the replicas did not become synchronous within 30 s"
  fi

  mkdir -m 700 "$d/repo" "$d/key-cache"
  printf 'bench-%s\n' "$(date +%s%N)" >"$d/repository.pass"
  chmod 600 "$d/repository.pass"
  cat >"$d/drkit.toml" <<EOF
[repository]
location = "$d/repo"
password = { file = "$d/repository.pass" }
key_cache = "$d/key-cache"

[[component]]
id = "postgres/bench"
kind = "postgres"
objectives = { rto = "5m", rpo = "1m" }
retention = "last=3"
wal_archiving = false

[component.connection]
host = "127.0.0.1"
port = ${pg_ports[0]}
user = "postgres"
tls = { mode = "disable" }

[component.failover]
members = [
  { name = "pg-1", host = "127.0.0.1", port = ${pg_ports[0]} },
  { name = "pg-2", host = "127.0.0.1", port = ${pg_ports[1]} },
  { name = "pg-3", host = "127.0.0.1", port = ${pg_ports[2]} },
]
loss_limit = "16MB"
fence_command = ["/bin/true"]
automatic = { interval = "1s", timeout = "1s", failures = 3 }

[agent]
listen = "127.0.0.1:0"
prune = { cron = "0 4 * * 0" }
EOF
  "$drkit" --config "$d/drkit.toml" init >"$d/init.log" 2>&1 ||
    die "drkit init failed: $(cat "$d/init.log")"
  RUST_LOG=info "$drkit" --config "$d/drkit.toml" agent </dev/null >"$d/agent.out" 2>"$d/agent.log" &
  procs+=($!)
  agent_pid=$!
  for _ in $(seq 600); do
    [ -s "$d/agent.out" ] && break
    kill -0 "$agent_pid" 2>/dev/null || die "the agent exited: $(tail -n 20 "$d/agent.log")"
    sleep 0.1
  done
  local first address
  first="$(head -n 1 "$d/agent.out")"
  address="${first##*http://}"
  address="${address%% *}"
  [ -n "$address" ] || die "the agent said no address: $first"
  metrics="http://$address/metrics"
  primary_up() { curl -fsS "$metrics" | grep -q '^drkit_cluster_primary_up{component="postgres/bench"} 1$'; }
  wait_for 60 "the monitor" primary_up ||
    die "the agent's monitor did not see the primary within a minute: $(tail -n 20 "$d/agent.log")"
  # The node to kill: the primary's postmaster (and its children).
  kill_node() { kill_tree "$(head -n 1 "$round_dir/n0/data/postmaster.pid")"; }
  tool_log() { tail -n 15 "$round_dir/agent.log"; }
}

# --- Patroni ---------------------------------------------------------------

# patroni_up <ttl> <loop_wait> <retry_timeout> [sync]
patroni_up() {
  local d="$round_dir" ttl="$1" loop_wait="$2" retry_timeout="$3" i synchronous=false
  [ "${4:-}" = sync ] && synchronous=true
  as_pg mkdir -m 700 "$d/etcd"
  as_pg etcd --name bench --data-dir "$d/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "bench=http://127.0.0.1:$etcd_peer_port" --initial-cluster-state new \
    </dev/null >"$d/etcd/etcd.log" 2>&1 &
  procs+=($!)
  wait_for 30 etcd curl -fsS "http://127.0.0.1:$etcd_port/health" ||
    die "etcd did not start: $(tail -n 10 "$d/etcd/etcd.log")"
  patroni_pids=()
  for i in 0 1 2; do
    as_pg mkdir -m 700 "$d/n$i"
    cat >"$d/n$i/patroni.yml" <<EOF
scope: bench
namespace: /drkit-bench/
name: n$i
restapi:
  listen: 127.0.0.1:${rest_ports[$i]}
  connect_address: 127.0.0.1:${rest_ports[$i]}
etcd3:
  host: 127.0.0.1:$etcd_port
watchdog:
  mode: 'off'
bootstrap:
  dcs:
    ttl: $ttl
    loop_wait: $loop_wait
    retry_timeout: $retry_timeout
    maximum_lag_on_failover: 1048576
    synchronous_mode: $synchronous
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        wal_log_hints: 'on'
        hot_standby: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
  - encoding: UTF8
  - locale: C
  - auth: trust
postgresql:
  listen: 127.0.0.1:${pg_ports[$i]}
  connect_address: 127.0.0.1:${pg_ports[$i]}
  data_dir: $d/n$i/data
  bin_dir: $pgbin
  pgpass: $d/n$i/pgpass
  use_pg_rewind: true
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
    rewind:
      username: postgres
      password: postgres
  parameters:
    unix_socket_directories: '$d/n$i'
    shared_buffers: 32MB
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication all 127.0.0.1/32 trust
EOF
    give "$d/n$i/patroni.yml"
    as_pg patroni "$d/n$i/patroni.yml" </dev/null >"$d/n$i/patroni.log" 2>&1 &
    procs+=($!)
    patroni_pids[$i]=$!
    if [ "$i" -eq 0 ]; then
      # The first bootstraps the cluster and leads it.
      wait_for 120 "the leader" curl -fsS "http://127.0.0.1:${rest_ports[0]}/primary" ||
        die "Patroni's first node did not lead within two minutes: $(tail -n 15 "$d/n0/patroni.log")"
    fi
  done
  wait_for 180 streaming replicas_streaming "${pg_ports[0]}" ||
    die "Patroni's replicas did not stream within three minutes: $(tail -n 10 "$d/n1/patroni.log")"
  if [ "$synchronous" = true ]; then
    wait_for 60 "a synchronous standby" synchronous_replicas "${pg_ports[0]}" ||
      die "Patroni named no synchronous standby within a minute: $(tail -n 10 "$d/n0/patroni.log")"
  fi
  kill_node() {
    local i
    for i in 0 1 2; do
      if curl -fsS "http://127.0.0.1:${rest_ports[$i]}/primary" >/dev/null 2>&1; then
        leader_log="$round_dir/n$i/patroni.log"
        kill_tree "${patroni_pids[$i]}" "$(head -n 1 "$round_dir/n$i/data/postmaster.pid")"
        return
      fi
    done
    die "no Patroni node leads"
  }
  tool_log() { local i; for i in 0 1 2; do tail -n 5 "$round_dir/n$i/patroni.log"; done; }
}

# --- pg_auto_failover --------------------------------------------------------

# pg_autoctl <args...>: as the postgres user, its files under the round's directory.
pg_autoctl() {
  as_pg env HOME="$round_dir" XDG_CONFIG_HOME="$round_dir/xdg/config" XDG_DATA_HOME="$round_dir/xdg/data" \
    XDG_RUNTIME_DIR="$round_dir/xdg/run" PG_CONFIG="$pgbin/pg_config" pg_autoctl "$@"
}

# pgaf_nodes <count> <sql condition>: that many of the monitor's nodes meet the condition.
pgaf_nodes() {
  [ "$("$pgbin/psql" -X -q -At -h 127.0.0.1 -p "$monitor_port" -U autoctl_node -d pg_auto_failover \
    -c "SELECT count(*) FROM pgautofailover.node WHERE $2" 2>/dev/null)" = "$1" ]
}

pgaf_up() {
  local d="$round_dir" i monitor_url
  as_pg mkdir -p -m 700 "$d/xdg/config" "$d/xdg/data" "$d/xdg/run"
  as_pg mkdir -m 700 "$d/monitor"
  pg_autoctl create monitor --pgdata "$d/monitor/data" --pgport "$monitor_port" \
    --pgctl "$pgbin/pg_ctl" --hostname 127.0.0.1 --listen 127.0.0.1 --auth trust --no-ssl --run \
    </dev/null >"$d/monitor/pg_autoctl.log" 2>&1 &
  procs+=($!)
  monitor_url="postgres://autoctl_node@127.0.0.1:$monitor_port/pg_auto_failover?sslmode=disable"
  wait_for 120 "the monitor" pgaf_nodes 0 true ||
    die "pg_auto_failover's monitor did not start: $(tail -n 15 "$d/monitor/pg_autoctl.log")"
  pgaf_pids=()
  for i in 0 1 2; do
    as_pg mkdir -m 700 "$d/n$i"
    pg_autoctl create postgres --pgdata "$d/n$i/data" --pgport "${pg_ports[$i]}" \
      --pgctl "$pgbin/pg_ctl" --pghost 127.0.0.1 --hostname 127.0.0.1 --listen 127.0.0.1 \
      --name "n$i" --monitor "$monitor_url" --auth trust --no-ssl --run \
      </dev/null >"$d/n$i/pg_autoctl.log" 2>&1 &
    procs+=($!)
    pgaf_pids[$i]=$!
    # Nodes join one at a time.
    if [ "$i" -eq 0 ]; then
      wait_for 180 "the first node" pgaf_nodes 1 "reportedstate = 'single' AND goalstate = 'single'" ||
        die "pg_auto_failover's first node did not start: $(tail -n 15 "$d/n0/pg_autoctl.log")"
    else
      wait_for 180 "node $i" pgaf_nodes "$i" "reportedstate = 'secondary' AND goalstate = 'secondary'" ||
        die "pg_auto_failover's node $i did not join: $(tail -n 15 "$d/n$i/pg_autoctl.log")"
    fi
  done
  wait_for 120 "the primary" pgaf_nodes 1 "reportedstate = 'primary' AND goalstate = 'primary'" ||
    die "pg_auto_failover's primary did not settle: $(tail -n 15 "$d/n0/pg_autoctl.log")"
  wait_for 60 streaming replicas_streaming "${pg_ports[0]}" ||
    die "pg_auto_failover's replicas did not stream within a minute"
  kill_node() {
    local i
    for i in 0 1 2; do
      if [ "$(sql_at "${pg_ports[$i]}" "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; then
        kill_tree "${pgaf_pids[$i]}" "$(head -n 1 "$round_dir/n$i/data/postmaster.pid")"
        return
      fi
    done
    die "no pg_auto_failover node takes writes"
  }
  tool_log() {
    local i
    tail -n 8 "$round_dir/monitor/pg_autoctl.log"
    for i in 0 1 2; do tail -n 4 "$round_dir/n$i/pg_autoctl.log"; done
  }
}

# --- one round -------------------------------------------------------------

# writer <dir>: inserts ids 1, 2, … every ~50 ms through the multi-host
# string; each acknowledged one as `id began ended` in <dir>/acked.
writer() {
  local dir="$1" id=0 began
  while [ ! -e "$dir/stop-writer" ]; do
    id=$((id + 1))
    began="$EPOCHREALTIME"
    if "$pgbin/psql" -X -q "$multihost connect_timeout=1" -c "INSERT INTO acked VALUES ($id)" \
      >/dev/null 2>&1; then
      echo "$id $began $EPOCHREALTIME" >>"$dir/acked"
    fi
    sleep 0.05
  done
}

declare -A times lost
# measure <key> <label>: load, kill, time and count on the cluster just built.
measure() {
  local key="$1" label="$2" d="$round_dir" killed first took n_acked n_lost writer_pid pgbench_pid lag
  sql_primary "CREATE TABLE acked (id bigint PRIMARY KEY)" >/dev/null
  "$pgbin/pgbench" -i -s "$scale" -q "$multihost" >"$d/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed: $(tail -n 5 "$d/pgbench-init.log")"
  # The replicas catch up with the initialization's WAL before the load starts.
  wait_for 120 "the replicas" caught_up ||
    say "  (the replicas did not replay everything pgbench -i wrote within two minutes)"
  "$pgbin/pgbench" -c 2 -j 1 -T 3600 -n "$multihost" >"$d/pgbench.log" 2>&1 &
  procs+=($!)
  pgbench_pid=$!
  : >"$d/acked"
  writer "$d" &
  procs+=($!)
  writer_pid=$!
  sleep "$load_seconds"
  n_acked="$(wc -l <"$d/acked")"
  [ "$n_acked" -gt 0 ] || die "$label: the writer had no write acknowledged in $load_seconds s"
  kill -0 "$pgbench_pid" 2>/dev/null || die "$label: pgbench stopped before the kill: $(tail -n 5 "$d/pgbench.log")"
  lag="$(sql_primary "SELECT string_agg((pg_current_wal_lsn() - replay_lsn)::text, ' ' ORDER BY application_name)
    FROM pg_stat_replication" 2>/dev/null || echo '?')"
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
  if [ -n "$first" ]; then
    sleep 2
  fi
  touch "$d/stop-writer"
  wait "$writer_pid" 2>/dev/null || true
  kill_tree "$pgbench_pid"
  wait "$pgbench_pid" 2>/dev/null || true
  if [ -z "$first" ]; then
    say "  $label: no write succeeded within $give_up s of the kill; no time counted (replicas' replay" \
      "lag just before the kill: ${lag:-none} bytes). Its last log lines:"
    while IFS= read -r note; do say "    $note"; done < <(tool_log)
    return
  fi
  took="$(awk -v a="$killed" -v b="$first" 'BEGIN { printf "%.2f", b - a }')"
  times[$key]="${times[$key]:-} $took"
  n_acked="$(wc -l <"$d/acked")"
  sql_primary "SELECT id FROM acked" | sort -n >"$d/present"
  n_lost="$(cut -d' ' -f1 "$d/acked" | sort -n | comm -23 - "$d/present" | wc -l)"
  lost[$key]="${lost[$key]:-} $n_lost"
  say "  $label: first write on the new primary $took s after the kill; $n_lost of $n_acked acknowledged writes lost" \
    "(replicas' replay lag just before the kill: ${lag:-none} bytes)"
  if [ "$key" = drkit ] || [ "$key" = drkit_sync ]; then
    # What the agent said of it.
    grep -m 1 'failed over' "$d/agent.log" | sed 's/\x1b\[[0-9;]*m//g' | while IFS= read -r note; do say "    agent: $note"; done ||
      say "    (the agent's log says nothing of a failover)"
  fi
}

# round <key> <label>: builds the tool's cluster, measures, tears it down.
round() {
  local key="$1" label="$2"
  new_round "$key-$r"
  case "$key" in
    drkit) drkit_up ;;
    patroni_default) patroni_up 30 10 10 ;;
    patroni_tuned) patroni_up 20 2 5 ;;
    pgaf) pgaf_up ;;
    drkit_sync) drkit_up sync ;;
    patroni_sync) patroni_up 20 2 5 sync ;;
  esac
  measure "$key" "$label"
  teardown
}

declare -A labels=([drkit]="drkit" [patroni_default]="Patroni (ttl 30, loop_wait 10, retry_timeout 10)"
  [patroni_tuned]="Patroni (ttl 20, loop_wait 2, retry_timeout 5)" [pgaf]="pg_auto_failover"
  [drkit_sync]="drkit, synchronous (ANY 1 (*))"
  [patroni_sync]="Patroni (ttl 20, loop_wait 2, retry_timeout 5), synchronous_mode")
say "$repeat rounds, the tools taking turns: a fresh three-node cluster each, pgbench -c 2 -j 1 (scale $scale)" \
  "and the writer for $load_seconds s, then the primary's node killed"
for r in $(seq "$repeat"); do
  say "round $r (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  for key in "${keys[@]}"; do
    round "$key" "${labels[$key]}"
  done
done

say "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for key in "${keys[@]}"; do
  say "${labels[$key]}: failover seconds${times[$key]:- (none)}; lost writes${lost[$key]:- (none)}"
done
result() {
  case " ${keys[*]} " in *" $2 "*) ;; *) return 0 ;; esac
  case " ${keys[*]} " in *" $3 "*) ;; *) return 0 ;; esac
  if [ -n "${times[$2]:-}" ] && [ -n "${times[$3]:-}" ]; then
    line "$1" "$(median "${times[$2]}")" "$(median "${times[$3]}")"
  else
    say "no $1: a tool failed over in no round"
  fi
}
result failover_seconds drkit patroni_tuned
result failover_seconds_vs_patroni_default drkit patroni_default
result failover_seconds_vs_pg_auto_failover drkit pgaf
result failover_seconds_synchronous drkit_sync patroni_sync
exit 0
