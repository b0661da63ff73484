#!/usr/bin/env bash
# scripts/bench postgres: drkit's PostgreSQL backup, restore and WAL archiving
# against pgBackRest, pg_basebackup and pg_receivewal, on one cluster, in one
# run.
#
# Starts a private PostgreSQL (initdb in a temporary directory, reachable
# only through a Unix socket there; as the `postgres` OS user when run as
# root) with a pgbench database (DRKIT_BENCH_SCALE, 50 by default: about
# 750 MB), then, in order:
#   1. full backup: drkit (a base backup into a fresh local repository),
#      pgBackRest (`backup --type=full`), pg_basebackup
#      (`-Ft -X none --compress=zstd -c fast`), DRKIT_BENCH_REPEAT rounds of
#      the three taking turns, the median time counting;
#   2. WAL archiving while pgbench runs (DRKIT_BENCH_SECONDS, 60 by default,
#      4 clients): drkit's archiver storing a piece every 200 ms, drkit's
#      archiver in synchronous mode (storing as soon as WAL arrives) and
#      `pg_receivewal --synchronous`, all three at once, each from its own
#      replication slot;
#   3. backup after that load: drkit (a delta base backup into the same
#      repository: every file XORed with the full backup's, then deduplicated
#      and compressed) and pgBackRest (`backup --type=incr`);
#   4. restore of the latest backup into an empty directory (as many rounds,
#      the median counting), without starting
#      a server: drkit (extract, rebuilding files from the delta and the full
#      backup and checking each against the backup manifest, WAL fetched and
#      staged, recovery settings) and pgBackRest
#      (`restore --type=default`, from the incremental and the full backup);
#      the pgbench database's files of the two are then compared.
#
# Both repositories are local, encrypted and zstd-compressed at each tool's
# default level (drkit 1, pgBackRest 3): drkit's with its default AEAD and key derivation at the recommended cost
# (paid by every process that opens the repository), pgBackRest's with
# `repo1-cipher-type=aes-256-cbc`, `compress-type=zst`, `process-max=2`,
# `start-fast=y`. pgBackRest needs `archive_mode=on` with its own
# `archive_command` while it backs up, so the server runs with `archive_mode=on`
# throughout and `archive_command` is pgBackRest's only around pgBackRest's
# steps (`/bin/true` otherwise), so that neither tool's archiving loads the
# other's backups. Autovacuum is off, so that both incremental backups see
# the same changes; a CHECKPOINT precedes each round of backups, so that no
# tool pays for the one before it. The cluster fits in the page cache: the
# backups read from memory, not from disk.
#
# Each backup and restore is timed by GNU time (wall seconds, peak resident
# memory), including everything a user waits for: key derivation, checkpoint,
# fsync. For pgBackRest, which forks worker processes, GNU time reports the
# largest single process, not their sum. Stored bytes are `du -sb` of what
# the backups added to each repository, without its WAL archive (drkit:
# everything but `archive/`; pgBackRest: `backup/`).
#
# Archiving lag: every 10 ms the archiver process samples, in one query, the
# server's `pg_current_wal_lsn()` and the `flush_lsn` that
# `pg_stat_replication` shows for each receiver (the flush position each
# reports once WAL is durable; pg_receivewal --synchronous reports each
# fsync at once); and, just before that query, the durable position each of
# drkit's archivers publishes in its status. A sample's lag is the time
# until the first sample at which the receiver's durable position reached
# the server's position of that sample; p50 and p99 are over the samples
# taken while pgbench ran, resolved to the sampling interval.
#
# The lag lines compare like with like: `wal_lag_p50_seconds` and
# `wal_lag_p99_seconds` are drkit's synchronous mode against
# `pg_receivewal --synchronous` (both make WAL durable as soon as it
# arrives), both as the server sees them, read in the same query as its
# position. `wal_lag_p99_seconds_own_status` takes drkit's position from its
# own status instead, read before the query, so that a sample never favours
# drkit (and often costs it one more sampling interval).
# `wal_lag_p50_seconds_piece_200ms` and `wal_lag_p99_seconds_piece_200ms` are
# drkit storing a piece every 200 ms, which trades up to that interval of
# lag for fewer objects, against the same pg_receivewal.
#
# Environment:
#   DRKIT_BENCH_SCALE    pgbench scale (default 50; less is for quick checks only)
#   DRKIT_BENCH_SECONDS  how long pgbench runs between the backups (default 60)
#   DRKIT_BENCH_DIR      where the temporary working directory goes (default $TMPDIR or /tmp)
#   DRKIT_BENCH_REPEAT   rounds of full backups and of restores (default 5: the
#                        first round of either tool is often the slowest by far)
#
# Needs PostgreSQL 15 or newer (initdb, pg_ctl, psql, pgbench, pg_basebackup,
# pg_receivewal), pgBackRest and GNU time; as root it installs missing ones
# from Debian's packages (`apt-get install postgresql pgbackrest time`),
# otherwise it names them and stops. It downloads nothing else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

scale="${DRKIT_BENCH_SCALE:-50}"
repeat="${DRKIT_BENCH_REPEAT:-5}"
load_seconds="${DRKIT_BENCH_SECONDS:-60}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bench="$target/release/examples/pg_bench"
build_log="$target/bench-postgres-build.log"
piece_ms=200

say() { printf 'bench postgres: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# --- prerequisites ---------------------------------------------------------

# PostgreSQL's programs: `pg_config --bindir`, else Debian's newest.
find_pg_bin() {
  local dir
  if dir="$(pg_config --bindir 2>/dev/null)" && [ -x "$dir/initdb" ]; then
    echo "$dir"
    return
  fi
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

install_missing() {
  local missing=()
  [ -n "$(find_pg_bin)" ] || missing+=(postgresql)
  command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
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

install_missing
pgbin="$(find_pg_bin)" || die "PostgreSQL's programs were not found (pg_config --bindir, /usr/lib/postgresql/*/bin)"
for tool in initdb pg_ctl psql pgbench pg_basebackup pg_receivewal; do
  [ -x "$pgbin/$tool" ] || die "$pgbin/$tool is missing"
done
pg_major="$("$pgbin/pg_basebackup" --version | sed -E 's/.* ([0-9]+)[.0-9]*.*/\1/')"
[ "$pg_major" -ge 15 ] 2>/dev/null ||
  die "PostgreSQL 15 or newer is needed (base backups with --compress=zstd); found $("$pgbin/pg_basebackup" --version)"
say "PostgreSQL: $("$pgbin/pg_basebackup" --version | sed 's/^pg_basebackup (PostgreSQL) //')"
say "peer: $(pgbackrest version)"
[[ "$scale" =~ ^[0-9]+$ ]] && [ "$scale" -gt 0 ] || die "DRKIT_BENCH_SCALE must be a positive number"
[[ "$repeat" =~ ^[0-9]+$ ]] && [ "$repeat" -gt 0 ] || die "DRKIT_BENCH_REPEAT must be a positive number"
[[ "$load_seconds" =~ ^[0-9]+$ ]] && [ "$load_seconds" -gt 0 ] ||
  die "DRKIT_BENCH_SECONDS must be a positive number of seconds"
if [ "$scale" -lt 50 ]; then
  say "DRKIT_BENCH_SCALE=$scale is below 50: a quick check, not a result"
fi

# As root, PostgreSQL and pgBackRest run as the postgres OS user (initdb
# refuses root); otherwise everything runs as the current user.
pg_user=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "there is no postgres user (Debian's postgresql package creates it)"
  pg_uid="$(id -u postgres)"
  pg_gid="$(id -g postgres)"
  pg_user=(setpriv "--reuid=$pg_uid" "--regid=$pg_gid" --init-groups --)
fi
as_pg() { "${pg_user[@]}" "$@"; }

say "building the example (release; log: $build_log)"
mkdir -p "$target"
if ! cargo build --release -p dr-postgres --example pg_bench --locked >"$build_log" 2>&1; then
  tail -n 30 "$build_log" >&2
  die "the build failed; see $build_log"
fi

# --- working directory -----------------------------------------------------

mkdir -p "$base"
work="$(mktemp -d "$base/drkit-bench-postgres.XXXXXX")"
chmod 755 "$work"
cd "$work"
pg="$work/pg"
data="$pg/data"
sock="$pg/sock"
port=5432 # only a Unix socket in $sock: no port is taken on the machine
pbr="$work/pgbackrest"
ours_repo="$work/drkit-repo"
samples="$work/samples.tsv"
conninfo="host=$sock port=$port user=postgres dbname=postgres"
DRKIT_PASSWORD="bench-$(date +%s%N)"
export DRKIT_PASSWORD

archiver_pid=""
receiver_pid=""
stop_fd=""
server_up=""

# stop_timed <pid> <signal>: signals the program GNU time (process <pid>) runs.
stop_timed() {
  local pid="$1" signal="$2" child
  for child in $(pgrep -P "$pid" 2>/dev/null); do kill "-$signal" "$child" 2>/dev/null || true; done
}

cleanup() {
  set +e
  if [ -n "$stop_fd" ]; then exec {stop_fd}>&-; fi
  for pid in $receiver_pid $archiver_pid; do
    stop_timed "$pid" TERM
    wait "$pid" 2>/dev/null
  done
  if [ -n "$server_up" ]; then
    as_pg "$pgbin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
  fi
  cd /
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -eq 0 ]; then
  as_pg test -x "$work" ||
    die "the postgres user cannot enter $work; point DRKIT_BENCH_DIR at a directory it can reach"
fi
mkdir -p "$pg" "$pbr"/{repo,log,lock} "$work/basebackup" "$work/receivewal"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$pg" "$pbr"; fi
as_pg mkdir -m 700 "$sock"

say "working in $work"
say "load before: $(uptime)"

sql() {
  "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d "${2:-postgres}" -c "$1"
}

# --- the server ------------------------------------------------------------

as_pg "$pgbin/initdb" -D "$data" -U postgres -E UTF8 --locale=C --auth=trust \
  >"$work/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$work/initdb.log")"
cat >>"$data/postgresql.conf" <<EOF

# scripts/bench postgres
listen_addresses = ''
port = $port
unix_socket_directories = '$sock'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
archive_mode = on
archive_command = '/bin/true'
shared_buffers = 256MB
autovacuum = off
log_line_prefix = '%m [%p] '
EOF
as_pg "$pgbin/pg_ctl" -D "$data" -l "$pg/server.log" -w -t 120 start >/dev/null ||
  die "PostgreSQL did not start: $(tail -n 10 "$pg/server.log")"
server_up=1

# archive_to <command>: sets archive_command and waits until the server uses it.
archive_to() {
  sql "ALTER SYSTEM SET archive_command = '$1'" >/dev/null
  sql "SELECT pg_reload_conf()" >/dev/null
  sleep 1
}

cat >"$pbr/pgbackrest.conf" <<EOF
[global]
repo1-path=$pbr/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$DRKIT_PASSWORD
repo1-retention-full=9
compress-type=zst
process-max=2
start-fast=y
log-path=$pbr/log
lock-path=$pbr/lock
log-level-console=warn
log-level-stderr=warn
log-level-file=info

[bench]
pg1-path=$data
pg1-socket-path=$sock
pg1-port=$port
EOF
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$pbr/pgbackrest.conf"; fi
chmod 600 "$pbr/pgbackrest.conf"
pgbackrest=("${pg_user[@]}" pgbackrest "--config=$pbr/pgbackrest.conf" --stanza=bench)
pgbackrest_archive="pgbackrest --config=$pbr/pgbackrest.conf --stanza=bench archive-push %p"

# --- measuring -------------------------------------------------------------

declare -A seconds memory
# timed <tool> <phase> <command...>: runs the command under GNU time and
# records its wall seconds and peak memory; its standard output and error go
# to $work/<tool>-<phase>.out and .err.
timed() {
  local tool="$1" phase="$2"
  shift 2
  local stats="$work/$tool-$phase.time" err="$work/$tool-$phase.err" secs kib
  if ! /usr/bin/time -f '%e %M' -o "$stats" "$@" </dev/null >"$work/$tool-$phase.out" 2>"$err"; then
    tail -n 20 "$err" "$work/$tool-$phase.out" >&2
    die "$tool $phase failed: $*"
  fi
  read -r secs kib <"$stats"
  seconds[$tool.$phase]="$secs"
  memory[$tool.$phase]=$((kib * 1024))
}

# round <tool> <phase>: keeps the last timed run of a repeated phase, for
# its median (runs.*) and its highest peak memory (peak.*).
declare -A runs peak
round() {
  runs[$1.$2]="${runs[$1.$2]:-} ${seconds[$1.$2]}"
  [ "${memory[$1.$2]}" -gt "${peak[$1.$2]:-0}" ] && peak[$1.$2]="${memory[$1.$2]}"
  return 0
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END {
  print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
stored() { du -sb "$1" | cut -f1; }
# What drkit's base backups occupy: the repository without its WAL archive
# and the journals of the segments in progress (which the archiver, still
# running, creates and removes meanwhile).
ours_stored() {
  local all wal=0 journals=0
  all="$(stored "$ours_repo")"
  [ -d "$ours_repo/archive" ] && wal="$(stored "$ours_repo/archive")"
  [ -d "$ours_repo/journal" ] && journals="$(stored "$ours_repo/journal")"
  echo $((all - wal - journals))
}
peer_stored() { stored "$pbr/repo/backup"; }

# notes <tool> <phase>: what the tool said about the phase, indented.
notes() {
  local note
  while IFS= read -r note; do say "    $note"; done <"$work/$1-$2.err"
}

lsn_of() { sql "SELECT (pg_current_wal_lsn() - '0/0')::int8"; }

# --- the run ---------------------------------------------------------------

say "pgbench -i -s $scale"
sql "CREATE DATABASE bench" >/dev/null
"$pgbin/pgbench" -i -s "$scale" -q -h "$sock" -p "$port" -U postgres bench \
  >"$work/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -n 5 "$work/pgbench-init.log")"
sql "CHECKPOINT" >/dev/null
say "database: $(sql "SELECT pg_database_size('bench')") bytes; data directory: $(stored "$data") bytes"

archive_to "$pgbackrest_archive"
"${pgbackrest[@]}" stanza-create >"$work/peer-stanza.log" 2>&1 ||
  die "pgbackrest stanza-create failed: $(cat "$work/peer-stanza.log")"
"${pgbackrest[@]}" check >"$work/peer-check.log" 2>&1 ||
  die "pgbackrest check failed: $(cat "$work/peer-check.log")"
archive_to /bin/true

# Single runs of the same backup vary by a third on a small virtual machine
# (page cache reclaimed in the background, the other tool's dirty pages):
# every tool backs up $repeat times, the tools taking turns, and the median
# counts. drkit's rounds each go into a new repository (the last one stays
# for what follows); pgBackRest's are full backups of one stanza.
say "full backups ($repeat rounds, the tools taking turns)"
for r in $(seq "$repeat"); do
  repo="$work/drkit-full-$r"
  [ "$r" -eq "$repeat" ] && repo="$ours_repo"
  timed ours full "$bench" backup --repo "$repo" --conninfo "$conninfo"
  round ours full
  ours_full_bytes="$(stored "$repo")"
  say "  drkit: ${seconds[ours.full]} s, $(mib "${memory[ours.full]}") peak, $ours_full_bytes bytes stored"
  [ "$repo" = "$ours_repo" ] || rm -rf "$repo"

  archive_to "$pgbackrest_archive"
  before="$(peer_stored)"
  timed peer full "${pgbackrest[@]}" backup --type=full
  round peer full
  peer_full_bytes=$(($(peer_stored) - before))
  archive_to /bin/true
  say "  pgBackRest: ${seconds[peer.full]} s, $(mib "${memory[peer.full]}") peak, $peer_full_bytes bytes stored"

  rm -rf "$work/basebackup"
  timed basebackup full "$pgbin/pg_basebackup" -h "$sock" -p "$port" -U postgres \
    -D "$work/basebackup" -Ft -X none --compress=zstd -c fast
  round basebackup full
  basebackup_bytes="$(stored "$work/basebackup")"
  say "  pg_basebackup: ${seconds[basebackup.full]} s, $(mib "${memory[basebackup.full]}") peak, $basebackup_bytes bytes stored"
done
notes ours full
say "  medians: drkit $(median "${runs[ours.full]}") s, pgBackRest $(median "${runs[peer.full]}") s," \
  "pg_basebackup $(median "${runs[basebackup.full]}") s"

say "WAL archiving under load: drkit (a piece every $piece_ms ms; synchronous mode), pg_receivewal --synchronous"
"$pgbin/pg_receivewal" -h "$sock" -p "$port" -U postgres --slot=receivewal_bench \
  --create-slot --if-not-exists >"$work/receivewal-slot.log" 2>&1 ||
  die "pg_receivewal --create-slot failed: $(cat "$work/receivewal-slot.log")"
mkfifo "$work/archiver.stop"
/usr/bin/time -f '%e %M %U %S' -o "$work/archiver.time" \
  "$bench" archive --repo "$ours_repo" --conninfo "$conninfo" --samples "$samples" \
  --piece-interval-ms "$piece_ms" --synchronous-too yes \
  --peers pg_receivewal_sync,drkit_bench,drkit_bench_sync \
  <"$work/archiver.stop" >"$work/archiver.out" 2>"$work/archiver.err" &
archiver_pid=$!
# The archiver runs until this descriptor is closed.
exec {stop_fd}>"$work/archiver.stop"
/usr/bin/time -f '%e %M %U %S' -o "$work/receivewal.time" \
  "$pgbin/pg_receivewal" -d "host=$sock port=$port user=postgres application_name=pg_receivewal_sync" \
  -D "$work/receivewal" --slot=receivewal_bench --synchronous --no-loop \
  </dev/null >"$work/receivewal.out" 2>"$work/receivewal.err" &
receiver_pid=$!

receivers="'drkit_bench', 'drkit_bench_sync', 'pg_receivewal_sync'"
for _ in $(seq 600); do
  streaming="$(sql "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name IN ($receivers)")"
  [ "$streaming" -eq 3 ] && break
  kill -0 "$archiver_pid" 2>/dev/null || die "the archiver stopped: $(tail -n 5 "$work/archiver.err")"
  kill -0 "$receiver_pid" 2>/dev/null || die "pg_receivewal stopped: $(tail -n 5 "$work/receivewal.err")"
  sleep 0.1
done
[ "$streaming" -eq 3 ] || die "the receivers did not all start streaming within a minute"
sleep 2

say "pgbench -c 4 -j 2 -T $load_seconds (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
load_start_lsn="$(lsn_of)"
t0="$(date +%s.%N)"
"$pgbin/pgbench" -c 4 -j 2 -T "$load_seconds" -P 10 -h "$sock" -p "$port" -U postgres bench \
  >"$work/pgbench-run.log" 2>&1 || die "pgbench failed: $(tail -n 5 "$work/pgbench-run.log")"
t1="$(date +%s.%N)"
load_end_lsn="$(lsn_of)"
say "  $(grep -E '^tps' "$work/pgbench-run.log" | head -n 1); $((load_end_lsn - load_start_lsn)) bytes of WAL; load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Wait until every receiver holds all of it, then stop pg_receivewal.
for _ in $(seq 600); do
  behind="$(sql "SELECT count(*) FROM pg_stat_replication WHERE application_name IN ($receivers) AND flush_lsn - '0/0' >= $load_end_lsn")"
  [ "$behind" -eq 3 ] && break
  sleep 0.1
done
[ "$behind" -eq 3 ] || say "  (not every receiver caught up within a minute; its late samples count as unresolved)"
# Sampling ends here, so that it does not load the backups that follow.
echo stop-sampling >&"$stop_fd"
stop_timed "$receiver_pid" INT
wait "$receiver_pid" || die "pg_receivewal failed: $(tail -n 5 "$work/receivewal.err")"
receiver_pid=""
sql "SELECT pg_drop_replication_slot('receivewal_bench')" >/dev/null

say "backups after the load"
sql "CHECKPOINT" >/dev/null
before="$(ours_stored)"
timed ours incr "$bench" backup --repo "$ours_repo" --conninfo "$conninfo" --delta yes
ours_incr_bytes=$(($(ours_stored) - before))
say "  drkit: ${seconds[ours.incr]} s, $(mib "${memory[ours.incr]}") peak, $ours_incr_bytes bytes stored"
notes ours incr

archive_to "$pgbackrest_archive"
"${pgbackrest[@]}" check >>"$work/peer-check.log" 2>&1 ||
  die "pgbackrest check failed: $(cat "$work/peer-check.log")"
before="$(peer_stored)"
timed peer incr "${pgbackrest[@]}" backup --type=incr
peer_incr_bytes=$(($(peer_stored) - before))
archive_to /bin/true
say "  pgBackRest: ${seconds[peer.incr]} s, $(mib "${memory[peer.incr]}") peak, $peer_incr_bytes bytes stored"
"${pgbackrest[@]}" info >"$work/peer-info.log" 2>&1 || true
while IFS= read -r note; do say "    $note"; done < <(grep -E 'backup:|database size|repo1: backup' "$work/peer-info.log")

say "stopping the archiver (it first archives everything the server has)"
exec {stop_fd}>&-
stop_fd=""
wait "$archiver_pid" || die "the archiver failed: $(tail -n 5 "$work/archiver.err")"
archiver_pid=""
while IFS= read -r note; do say "    $note"; done <"$work/archiver.err"
read -r _ archiver_kib archiver_user archiver_sys <"$work/archiver.time"
read -r _ receiver_kib receiver_user receiver_sys <"$work/receivewal.time"
say "  CPU: drkit's archiver process (both archivers and the sampler) ${archiver_user} s user + ${archiver_sys} s system," \
  "$(mib $((archiver_kib * 1024))) peak; pg_receivewal ${receiver_user} s user + ${receiver_sys} s system, $(mib $((receiver_kib * 1024))) peak"

say "  WAL stored: drkit $(stored "$ours_repo/archive/bench/postgres") bytes (pieces and segments)," \
  "$(stored "$ours_repo/archive/bench/postgres-sync") bytes (synchronous mode, and" \
  "$( [ -d "$ours_repo/journal" ] && stored "$ours_repo/journal" || echo 0) bytes of journals, allocated ahead);" \
  "pg_receivewal $(stored "$work/receivewal") bytes"

say "restores of the latest backup ($repeat rounds, the tools taking turns)"
for r in $(seq "$repeat"); do
  # The restore stages its WAL beside the data directory, for recovery.
  rm -rf "$work/restore-ours" "$work/.restore-ours.drkit-wal" "$work/restore-peer"
  timed ours restore "$bench" restore --repo "$ours_repo" --to "$work/restore-ours" \
    ${pg_uid:+--owner "$pg_uid:$pg_gid"}
  round ours restore
  say "  drkit: ${seconds[ours.restore]} s, $(mib "${memory[ours.restore]}") peak"
  mkdir -m 700 "$work/restore-peer"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$work/restore-peer"; fi
  timed peer restore "${pgbackrest[@]}" restore --type=default "--pg1-path=$work/restore-peer"
  round peer restore
  say "  pgBackRest: ${seconds[peer.restore]} s, $(mib "${memory[peer.restore]}") peak"
done
notes ours restore
say "  medians: drkit $(median "${runs[ours.restore]}") s, pgBackRest $(median "${runs[peer.restore]}") s"

# Both restored the same data: nothing wrote to the pgbench database between
# the two backups after the load, so each of its files must match.
bench_oid="$(sql "SELECT oid FROM pg_database WHERE datname = 'bench'")"
digest() { (cd "$1/base/$bench_oid" && find . -type f ! -name pg_internal.init -print0 | sort -z | xargs -0 sha256sum); }
if ! diff <(digest "$work/restore-ours") <(digest "$work/restore-peer") >"$work/restore.diff"; then
  head -n 20 "$work/restore.diff" >&2
  die "the two restores differ in the pgbench database's files (see above)"
fi
say "both restores hold the same $(digest "$work/restore-ours" | wc -l) files of the pgbench database"

lags="$("$bench" lag --samples "$samples" --from "$t0" --to "$t1")"
say "archiving lag while pgbench ran (name p50 p99 max samples unresolved, seconds):"
while IFS= read -r note; do say "    $note"; done <<<"$lags"
lag_of() { awk -v name="$1" -v column="$2" '$1 == name { print $column }' <<<"$lags"; }
say "load after: $(uptime)"

line() {
  awk -v name="$1" -v ours="$2" -v peer="$3" 'BEGIN {
    ratio = (peer > 0) ? sprintf("%.2f", ours / peer) : "inf"
    printf "%s ours=%s peer=%s ratio=%s\n", name, ours, peer, ratio
  }'
}

line full_backup_seconds "$(median "${runs[ours.full]}")" "$(median "${runs[peer.full]}")"
line full_backup_seconds_vs_pg_basebackup "$(median "${runs[ours.full]}")" "$(median "${runs[basebackup.full]}")"
line full_stored_bytes "$ours_full_bytes" "$peer_full_bytes"
line full_stored_bytes_vs_pg_basebackup "$ours_full_bytes" "$basebackup_bytes"
line full_backup_peak_memory_bytes "${peak[ours.full]}" "${peak[peer.full]}"
line incr_backup_seconds "${seconds[ours.incr]}" "${seconds[peer.incr]}"
line incr_stored_bytes "$ours_incr_bytes" "$peer_incr_bytes"
line incr_backup_peak_memory_bytes "${memory[ours.incr]}" "${memory[peer.incr]}"
line restore_seconds "$(median "${runs[ours.restore]}")" "$(median "${runs[peer.restore]}")"
line restore_peak_memory_bytes "${peak[ours.restore]}" "${peak[peer.restore]}"
line wal_lag_p50_seconds "$(lag_of drkit_bench_sync 2)" "$(lag_of pg_receivewal_sync 2)"
line wal_lag_p99_seconds "$(lag_of drkit_bench_sync 3)" "$(lag_of pg_receivewal_sync 3)"
line wal_lag_p99_seconds_own_status "$(lag_of ours_synchronous 3)" "$(lag_of pg_receivewal_sync 3)"
line "wal_lag_p50_seconds_piece_${piece_ms}ms" "$(lag_of drkit_bench 2)" "$(lag_of pg_receivewal_sync 2)"
line "wal_lag_p99_seconds_piece_${piece_ms}ms" "$(lag_of drkit_bench 3)" "$(lag_of pg_receivewal_sync 3)"
