#!/usr/bin/env bash
# scripts/bench postgres: drkit's PostgreSQL backup, restore and WAL archiving
# against pgBackRest, pg_basebackup and pg_receivewal, on one cluster, in one
# run, `drkit wal push` against `pgbackrest archive-push` as
# archive_command, and drkit's logical backup and restore against pg_dump
# and pg_restore. The method (what each tool does, how time, memory, stored
# bytes and archiving lag are measured), the figures and the environment
# variables that adjust it (DRKIT_BENCH_SCALE, DRKIT_BENCH_SECONDS,
# DRKIT_BENCH_REPEAT, DRKIT_BENCH_SEGMENTS, DRKIT_BENCH_DIR,
# DRKIT_BENCH_ONLY) are in BENCHMARKS.md. Needs PostgreSQL 15 or newer,
# pgBackRest and GNU time (installed as root from Debian's packages); it
# downloads nothing else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

scale="${DRKIT_BENCH_SCALE:-50}"
repeat="${DRKIT_BENCH_REPEAT:-5}"
load_seconds="${DRKIT_BENCH_SECONDS:-60}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bench="$target/release/pg_bench"
drkit="$target/release/drkit"
build_log="$target/bench-postgres-build.log"
segments="${DRKIT_BENCH_SEGMENTS:-200}"
only="${DRKIT_BENCH_ONLY:-}"
piece_ms=200

bench_name=postgres
# shellcheck source=scripts/lib/bench.sh
source "$root/scripts/lib/bench.sh"

# --- prerequisites ---------------------------------------------------------

case "$only" in
  "" | logical) ;;
  *) die "DRKIT_BENCH_ONLY must be unset (everything) or 'logical' (it is '$only')" ;;
esac

missing=()
[ -n "$(find_pg_bin)" ] || missing+=(postgresql)
[ "$only" = logical ] || command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
missing+=($(gnu_time_missing))
install_missing "${missing[@]}"
pgbin="$(find_pg_bin)" || die "PostgreSQL's programs were not found (pg_config --bindir, /usr/lib/postgresql/*/bin)"
for tool in initdb pg_ctl psql pgbench pg_basebackup pg_receivewal pg_dump pg_restore createdb; do
  [ -x "$pgbin/$tool" ] || die "$pgbin/$tool is missing"
done
pg_major="$("$pgbin/pg_basebackup" --version | sed -E 's/.* ([0-9]+)[.0-9]*.*/\1/')"
[ "$pg_major" -ge 15 ] 2>/dev/null ||
  die "PostgreSQL 15 or newer is needed (base backups with --compress=zstd); found $("$pgbin/pg_basebackup" --version)"
say "PostgreSQL: $("$pgbin/pg_basebackup" --version | sed 's/^pg_basebackup (PostgreSQL) //')"
[ "$only" = logical ] || say "peer: $(pgbackrest version)"
positive DRKIT_BENCH_SCALE "$scale"
positive DRKIT_BENCH_REPEAT "$repeat"
positive DRKIT_BENCH_SECONDS "$load_seconds"
positive DRKIT_BENCH_SEGMENTS "$segments"
if [ "$scale" -lt 50 ]; then
  say "DRKIT_BENCH_SCALE=$scale is below 50: a quick check, not a result"
fi
if [ "$only" = logical ]; then
  say "DRKIT_BENCH_ONLY=logical: only the logical backups and restores, not a whole run"
fi
if [ "$segments" -lt 200 ]; then
  say "DRKIT_BENCH_SEGMENTS=$segments is below 200: the archive_command figure is a quick check, not a result"
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

build_bench pg_bench "$build_log"
[ "$only" = logical ] || build_drkit "$target/bench-postgres-build-drkit.log"

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


lsn_of() { sql "SELECT (pg_current_wal_lsn() - '0/0')::int8"; }

# --- logical backups: drkit against pg_dump and pg_restore -----------------

# A database of its own, created when this part starts: pgbench's tables at
# $scale and `blobs`, 200 MiB of random bytes (bytea, 1 KiB a row). A dump
# writes bytea as hex text, so no compressor brings that table below about
# its size.
logical_db=logical
logical_dir="$work/logical"
logical_repo="$logical_dir/drkit-repo"
logical_rows=204800
pg_dump=("${pg_user[@]}" "$pgbin/pg_dump" -h "$sock" -p "$port" -U postgres --no-password)
restore_new="$work/restore-new"

logical_setup() {
  mkdir -m 755 "$logical_dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$logical_dir"; fi
  # pg_restore into a database it creates first, as drkit's restore does.
  cat >"$restore_new" <<EOF
#!/bin/sh
# restore-new <database> <pg_restore arguments...>: creates the database
# (from template0), then pg_restore restores into it.
set -e
database="\$1"
shift
"$pgbin/createdb" -h "$sock" -p $port -U postgres -T template0 "\$database"
exec "$pgbin/pg_restore" -h "$sock" -p $port -U postgres --no-password --exit-on-error -d "\$database" "\$@"
EOF
  chmod 755 "$restore_new"

  say "logical: pgbench -i -s $scale and $logical_rows KiB of random bytes into the database $logical_db"
  sql "CREATE DATABASE $logical_db" >/dev/null
  "$pgbin/pgbench" -i -s "$scale" -q -h "$sock" -p "$port" -U postgres "$logical_db" \
    >"$work/pgbench-init-logical.log" 2>&1 ||
    die "pgbench -i failed: $(tail -n 5 "$work/pgbench-init-logical.log")"
  sql "CREATE TABLE blobs (id int PRIMARY KEY, v bytea NOT NULL)" "$logical_db" >/dev/null
  if [ "$(sql "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgcrypto'")" -eq 1 ]; then
    sql "CREATE EXTENSION pgcrypto" "$logical_db" >/dev/null
    sql "INSERT INTO blobs SELECT g, gen_random_bytes(1024) FROM generate_series(1, $logical_rows) g" \
      "$logical_db" >/dev/null
    sql "DROP EXTENSION pgcrypto" "$logical_db" >/dev/null
  else
    say "  (no pgcrypto: the random bytes come from md5(random()), 64 digests a row)"
    sql "INSERT INTO blobs SELECT g, (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex')
           FROM generate_series(1, 64) i) FROM generate_series(1, $logical_rows) g" "$logical_db" >/dev/null
  fi
  # Hint bits set and statistics taken now, not by whichever dump reads first.
  sql "VACUUM (FREEZE, ANALYZE)" "$logical_db" >/dev/null
  sql "CHECKPOINT" >/dev/null
  say "  database: $(sql "SELECT pg_database_size('$logical_db')") bytes, of which blobs" \
    "$(sql "SELECT pg_total_relation_size('blobs')" "$logical_db") bytes"
}

# logical_dump <repo> <phase>: drkit's logical backup of the database into <repo>.
logical_dump() {
  timed ours "$2" "${pg_user[@]}" "$bench" dump --repo "$1" --conninfo "$conninfo" \
    --database "$logical_db" --bindir "$pgbin"
}

# pg_dump_file <file> <phase>: the peer's dump into a file, compressed at gzip's level 9.
pg_dump_file() {
  rm -f "$1"
  timed peer "$2" "${pg_dump[@]}" --format=custom --compress=9 -f "$1" "$logical_db"
}

# logical_digest <database>: rows and sums of every table, and a digest of blobs.
logical_digest() {
  sql "SELECT concat_ws(' ',
         (SELECT count(*) || ':' || coalesce(sum(abalance), 0) FROM pgbench_accounts),
         (SELECT count(*) || ':' || coalesce(sum(bbalance), 0) FROM pgbench_branches),
         (SELECT count(*) || ':' || coalesce(sum(tbalance), 0) FROM pgbench_tellers),
         (SELECT count(*) FROM pgbench_history),
         (SELECT count(*) || ':' || md5(string_agg(md5(v), '' ORDER BY id)) FROM blobs))" "$1"
}

# check_restored <database>: stops unless a restored database holds what the
# dumped one does (nothing writes to that during the restores), then drops
# it and checkpoints, so that the next restore has its room and pays for
# none of it.
check_restored() {
  local restored
  restored="$(logical_digest "$1")"
  [ "$restored" = "$logical_expected" ] ||
    die "$1 differs from $logical_db: $restored against $logical_expected"
  sql "DROP DATABASE $1" >/dev/null
  sql "CHECKPOINT" >/dev/null
}

logical_run() {
  logical_setup
  local r repo before accounts

  say "logical backups ($repeat rounds, the tools taking turns): drkit, pg_dump --format=custom" \
    "--compress=9, pg_dump --format=directory -j 2, and pg_dump --compress=0 into /dev/null" \
    "(pg_dump's own share of drkit's time)"
  for r in $(seq "$repeat"); do
    repo="$logical_dir/drkit-$r"
    [ "$r" -eq "$repeat" ] && repo="$logical_repo"
    logical_dump "$repo" logical_backup
    ours_dump_bytes="$(stored "$repo")"
    say "  drkit: ${seconds[ours.logical_backup]} s, $(mib "${memory[ours.logical_backup]}") peak," \
      "$ours_dump_bytes bytes stored"
    [ "$repo" = "$logical_repo" ] || rm -rf "$repo"

    pg_dump_file "$logical_dir/first.dump" logical_backup
    peer_dump_bytes="$(stat -c %s "$logical_dir/first.dump")"
    say "  pg_dump -Fc -Z9: ${seconds[peer.logical_backup]} s, $(mib "${memory[peer.logical_backup]}") peak," \
      "$peer_dump_bytes bytes"

    rm -rf "$logical_dir/first.d"
    timed pg_dump_dir logical_backup "${pg_dump[@]}" --format=directory -j 2 -f "$logical_dir/first.d" "$logical_db"
    say "  pg_dump -Fd -j 2: ${seconds[pg_dump_dir.logical_backup]} s," \
      "$(mib "${memory[pg_dump_dir.logical_backup]}") peak, $(stored "$logical_dir/first.d") bytes"

    timed --out /dev/null pg_dump_z0 logical_backup "${pg_dump[@]}" --format=custom --compress=0 "$logical_db"
    say "  pg_dump -Fc -Z0 into /dev/null: ${seconds[pg_dump_z0.logical_backup]} s"
  done
  notes ours logical_backup
  say "  medians: drkit $(median "${runs[ours.logical_backup]}") s, pg_dump -Fc -Z9" \
    "$(median "${runs[peer.logical_backup]}") s, pg_dump -Fd -j 2 $(median "${runs[pg_dump_dir.logical_backup]}") s," \
    "pg_dump -Fc -Z0 into /dev/null $(median "${runs[pg_dump_z0.logical_backup]}") s"

  logical_expected="$(logical_digest "$logical_db")"
  sql "CHECKPOINT" >/dev/null
  say "logical restores into a new database ($repeat rounds, the tools taking turns): drkit with 2 jobs" \
    "(the dump spooled into a file, pg_restore -j 2), drkit streaming (pg_restore --single-transaction" \
    "reading the dump as it comes out of the repository), pg_restore of the -Z9 file, and pg_restore -j 2" \
    "of the directory; each restored database is compared with $logical_db ($logical_expected), then dropped"
  for r in $(seq "$repeat"); do
    timed ours logical_restore "${pg_user[@]}" "$bench" restore-dump --repo "$logical_repo" \
      --conninfo "$conninfo" --database "$logical_db" --into restored_ours --bindir "$pgbin" \
      --jobs 2 --spool-dir "$logical_dir"
    say "  drkit, 2 jobs: ${seconds[ours.logical_restore]} s, $(mib "${memory[ours.logical_restore]}") peak"
    check_restored restored_ours
    timed streamed logical_restore "${pg_user[@]}" "$bench" restore-dump --repo "$logical_repo" \
      --conninfo "$conninfo" --database "$logical_db" --into restored_streamed --bindir "$pgbin"
    say "  drkit, streaming: ${seconds[streamed.logical_restore]} s, $(mib "${memory[streamed.logical_restore]}") peak"
    check_restored restored_streamed
    timed peer logical_restore "${pg_user[@]}" "$restore_new" restored_peer "$logical_dir/first.dump"
    say "  pg_restore: ${seconds[peer.logical_restore]} s, $(mib "${memory[peer.logical_restore]}") peak"
    check_restored restored_peer
    timed pg_restore_dir logical_restore "${pg_user[@]}" "$restore_new" restored_dir -j 2 "$logical_dir/first.d"
    say "  pg_restore -j 2: ${seconds[pg_restore_dir.logical_restore]} s," \
      "$(mib "${memory[pg_restore_dir.logical_restore]}") peak"
    check_restored restored_dir
  done
  notes ours logical_restore
  notes streamed logical_restore
  say "  medians: drkit with 2 jobs $(median "${runs[ours.logical_restore]}") s, drkit streaming" \
    "$(median "${runs[streamed.logical_restore]}") s, pg_restore $(median "${runs[peer.logical_restore]}") s," \
    "pg_restore -j 2 $(median "${runs[pg_restore_dir.logical_restore]}") s"

  accounts="$(sql "SELECT count(*) FROM pgbench_accounts" "$logical_db")"
  say "a day's change: $((accounts / 100)) rows (1%) appended to pgbench_accounts, nothing else touched"
  sql "INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
         SELECT aid, (aid - 1) % $scale + 1, 0, '' FROM generate_series($accounts + 1, $accounts + $accounts / 100) aid" \
    "$logical_db" >/dev/null
  sql "CHECKPOINT" >/dev/null
  before="$(stored "$logical_repo")"
  logical_dump "$logical_repo" logical_second
  ours_second_bytes=$(($(stored "$logical_repo") - before))
  say "  drkit: ${seconds[ours.logical_second]} s, $ours_second_bytes bytes stored"
  notes ours logical_second
  pg_dump_file "$logical_dir/second.dump" logical_second
  peer_second_bytes="$(stat -c %s "$logical_dir/second.dump")"
  say "  pg_dump -Fc -Z9: ${seconds[peer.logical_second]} s, $peer_second_bytes bytes"

  say "pgbench -c 4 -j 2 -T $load_seconds on $logical_db"
  "$pgbin/pgbench" -c 4 -j 2 -T "$load_seconds" -h "$sock" -p "$port" -U postgres "$logical_db" \
    >"$work/pgbench-logical.log" 2>&1 || die "pgbench failed: $(tail -n 5 "$work/pgbench-logical.log")"
  say "  $(grep -E '^tps' "$work/pgbench-logical.log" | head -n 1)"
  sql "CHECKPOINT" >/dev/null
  before="$(stored "$logical_repo")"
  logical_dump "$logical_repo" logical_third
  ours_third_bytes=$(($(stored "$logical_repo") - before))
  say "  drkit: ${seconds[ours.logical_third]} s, $ours_third_bytes bytes stored"
  pg_dump_file "$logical_dir/third.dump" logical_third
  peer_third_bytes="$(stat -c %s "$logical_dir/third.dump")"
  say "  pg_dump -Fc -Z9: ${seconds[peer.logical_third]} s, $peer_third_bytes bytes"
}

logical_lines() {
  line logical_backup_seconds "$(median "${runs[ours.logical_backup]}")" "$(median "${runs[peer.logical_backup]}")"
  line logical_backup_seconds_vs_directory "$(median "${runs[ours.logical_backup]}")" \
    "$(median "${runs[pg_dump_dir.logical_backup]}")"
  line logical_restore_seconds "$(median "${runs[ours.logical_restore]}")" "$(median "${runs[peer.logical_restore]}")"
  line logical_restore_seconds_vs_directory "$(median "${runs[ours.logical_restore]}")" \
    "$(median "${runs[pg_restore_dir.logical_restore]}")"
  line logical_restore_streamed_seconds "$(median "${runs[streamed.logical_restore]}")" \
    "$(median "${runs[peer.logical_restore]}")"
  line logical_first_dump_bytes "$ours_dump_bytes" "$peer_dump_bytes"
  line logical_second_dump_bytes "$ours_second_bytes" "$peer_second_bytes"
  line logical_after_pgbench_bytes "$ours_third_bytes" "$peer_third_bytes"
}

if [ "$only" = logical ]; then
  logical_run
  logical_lines
  exit 0
fi

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
  ours_full_bytes="$(stored "$repo")"
  say "  drkit: ${seconds[ours.full]} s, $(mib "${memory[ours.full]}") peak, $ours_full_bytes bytes stored"
  [ "$repo" = "$ours_repo" ] || rm -rf "$repo"

  archive_to "$pgbackrest_archive"
  before="$(peer_stored)"
  timed peer full "${pgbackrest[@]}" backup --type=full
  peer_full_bytes=$(($(peer_stored) - before))
  archive_to /bin/true
  say "  pgBackRest: ${seconds[peer.full]} s, $(mib "${memory[peer.full]}") peak, $peer_full_bytes bytes stored"

  rm -rf "$work/basebackup"
  timed basebackup full "$pgbin/pg_basebackup" -h "$sock" -p "$port" -U postgres \
    -D "$work/basebackup" -Ft -X none --compress=zstd -c fast
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
  --piece-interval-ms "$piece_ms" --synchronous-too \
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
timed ours incr "$bench" backup --repo "$ours_repo" --conninfo "$conninfo" --delta
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
  say "  drkit: ${seconds[ours.restore]} s, $(mib "${memory[ours.restore]}") peak"
  mkdir -m 700 "$work/restore-peer"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$work/restore-peer"; fi
  timed peer restore "${pgbackrest[@]}" restore --type=default "--pg1-path=$work/restore-peer"
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

# --- archive_command: drkit wal push against pgbackrest archive-push ---------

# The same real segments for both: the server's own WAL under pgbench (a
# CHECKPOINT between rounds, so that full-page images come back as they do
# in production), copied aside by a plain archive_command until there are
# $segments, then pushed, one call per segment as PostgreSQL makes them, by
# each tool in turn, each call timed.
say "archive_command: collecting $segments WAL segments under pgbench"
wal_src="$work/wal-src"
mkdir -m 700 "$wal_src"
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$wal_src"; fi
full_segments() { find "$wal_src" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9A-F]{24}' -type f | sort; }
archive_to "test ! -f $wal_src/%f && cp %p $wal_src/%f"
while [ "$(full_segments | wc -l)" -lt "$segments" ]; do
  "$pgbin/pgbench" -c 4 -j 2 -T 10 -h "$sock" -p "$port" -U postgres bench \
    >>"$work/pgbench-wal.log" 2>&1 || die "pgbench failed: $(tail -n 5 "$work/pgbench-wal.log")"
  sql "CHECKPOINT" >/dev/null
  sql "SELECT pg_switch_wal()" >/dev/null
  sleep 1
done
mapfile -t wal_files < <(full_segments | head -n "$segments")
# The last one chosen may still be being copied: wait until it is archived.
wanted="$(basename "${wal_files[-1]}")"
for _ in $(seq 600); do
  archived="$(sql "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")"
  [[ "$archived" < "$wanted" ]] || break
  sleep 0.1
done
[[ "$archived" < "$wanted" ]] && die "$wanted was not archived within a minute"
archive_to /bin/true
say "  $(full_segments | wc -l) segments collected; pushing the first ${#wal_files[@]}"

push_repo="$work/drkit-push-repo"
push_conf="$work/drkit-push.toml"
push_pass="$work/drkit-push.pass"
key_cache="$work/drkit-key-cache"
mkdir "$push_repo"
mkdir -m 700 "$key_cache"
printf '%s\n' "$DRKIT_PASSWORD" >"$push_pass"
chmod 600 "$push_pass"
cat >"$push_conf" <<EOF
[repository]
location = "$push_repo"
password = { file = "$push_pass" }
key_cache = "$key_cache"

[[component]]
id = "postgres/bench"
kind = "postgres"
objectives = { rto = "30m", rpo = "5m" }
retention = "last=3"
wal_archiving = true
connection = { host = "$sock", port = $port, user = "postgres", tls = { mode = "disable" } }
EOF
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$push_repo" "$key_cache" "$push_pass" "$push_conf"
fi
as_pg "$drkit" --config "$push_conf" init >"$work/drkit-push-init.log" 2>&1 ||
  die "drkit init failed: $(cat "$work/drkit-push-init.log")"

# push <tool> <file>: one archive_command call, as the server's user; adds
# its wall seconds to push_total[<tool>] and push_secs[<tool>], and keeps
# its peak memory in peak[<tool>.push] (peak[<tool>.push_first] for the
# tool's first call).
declare -A push_total=([ours]=0 [peer]=0) push_secs=()
push() {
  local tool="$1" file="$2" t0 t1 kib
  t0="$EPOCHREALTIME"
  if [ "$tool" = ours ]; then
    /usr/bin/time -f '%M' -o "$work/push.time" "${pg_user[@]}" "$drkit" --config "$push_conf" \
      wal push "$file" >"$work/push.out" 2>&1
  else
    /usr/bin/time -f '%M' -o "$work/push.time" "${pgbackrest[@]}" archive-push "$file" \
      >"$work/push.out" 2>&1
  fi || die "$tool could not push $file: $(tail -n 5 "$work/push.out")"
  t1="$EPOCHREALTIME"
  read -r kib <"$work/push.time"
  push_total[$tool]="$(awk -v a="${push_total[$tool]}" -v b="$t0" -v c="$t1" 'BEGIN { printf "%.6f", a + c - b }')"
  push_secs[$tool]+=" $(awk -v b="$t0" -v c="$t1" 'BEGIN { printf "%.6f", c - b }')"
  if [ -z "${peak[$tool.push_first]:-}" ]; then
    peak[$tool.push_first]=$((kib * 1024))
  elif [ $((kib * 1024)) -gt "${peak[$tool.push]:-0}" ]; then
    peak[$tool.push]=$((kib * 1024))
  fi
  return 0
}
say "pushing ${#wal_files[@]} segments, one call each, the tools taking turns (drkit's first call derives the key)"
i=0
for file in "${wal_files[@]}"; do
  if [ $((i % 2)) -eq 0 ]; then
    push ours "$file"
    push peer "$file"
  else
    push peer "$file"
    push ours "$file"
  fi
  i=$((i + 1))
done
[ -n "$(ls -A "$key_cache")" ] || die "drkit wrote no key cache entry in $key_cache: $(cat "$work/push.out")"
per_segment() { awk -v t="$1" -v n="${#wal_files[@]}" 'BEGIN { printf "%.4f", t / n }'; }
ours_push="$(per_segment "${push_total[ours]}")"
peer_push="$(per_segment "${push_total[peer]}")"
for tool in ours peer; do
  say "  $( [ "$tool" = ours ] && echo drkit || echo pgBackRest): ${push_total[$tool]} s in all," \
    "median $(median "${push_secs[$tool]}") s; peak memory $(mib "${peak[$tool.push_first]}") (first call)," \
    "$(mib "${peak[$tool.push]:-0}") (the others)"
done
peer_pushed_bytes=0
for file in "${wal_files[@]}"; do
  while read -r bytes; do
    peer_pushed_bytes=$((peer_pushed_bytes + bytes))
  done < <(find "$pbr/repo/archive" -type f -name "$(basename "$file")-*" -printf '%s\n')
done
say "  stored: drkit $(stored "$push_repo/archive") bytes, pgBackRest $peer_pushed_bytes bytes, of $((${#wal_files[@]} * $(stat -c %s "${wal_files[0]}"))) bytes of WAL"
# Both hold what they were given: the last segment comes back from each.
last="${wal_files[-1]}"
for tool in ours peer; do
  if [ "$tool" = ours ]; then
    as_pg "$drkit" --config "$push_conf" wal fetch "$(basename "$last")" "$wal_src/back" >"$work/push.out" 2>&1
  else
    "${pgbackrest[@]}" archive-get "$(basename "$last")" "$wal_src/back" >"$work/push.out" 2>&1
  fi || die "$tool could not give back $(basename "$last"): $(tail -n 5 "$work/push.out")"
  cmp -s "$last" "$wal_src/back" || die "$tool gave back other bytes for $(basename "$last")"
  rm -f "$wal_src/back"
done

# --- logical backups ---------------------------------------------------------

# Nothing reads these again, and the logical part needs the room.
rm -rf "$wal_src" "$push_repo" "$work/restore-ours" "$work/.restore-ours.drkit-wal" \
  "$work/restore-peer" "$work/basebackup"
logical_run

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
line archive_push_seconds_per_segment "$ours_push" "$peer_push"
logical_lines
