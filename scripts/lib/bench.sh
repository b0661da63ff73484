# What drkit's benchmark scripts (scripts/bench.d/*.sh) share. Sourced, not
# run: the sourcing script sets `bench_name` first, and `work` (its working
# directory) before it times anything. See BENCHMARKS.md for the methods.

say() { printf 'bench %s: %s\n' "$bench_name" "$*" >&2; }
die() {
  say "$*"
  exit 1
}

# install_missing <package...>: installs Debian's packages as root, else
# names them and stops.
install_missing() {
  [ $# -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing: $*. Install them (on Debian: sudo apt-get install -y $*) and run again."
  fi
  say "installing from Debian's packages: $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; then
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
  fi
}

# gnu_time_missing: prints `time` if GNU time is not installed.
# find_pg_bin: PostgreSQL's programs: `pg_config --bindir`, else Debian's newest.
find_pg_bin() {
  local dir
  if dir="$(pg_config --bindir 2>/dev/null)" && [ -x "$dir/initdb" ]; then
    echo "$dir"
    return
  fi
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

gnu_time_missing() { /usr/bin/time --version 2>&1 | grep -q GNU || echo time; }

# positive <name> <value>: stops unless the value is a whole number above zero.
positive() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a whole number above zero (it is '$2')"
}

# build_bench <bin> <log>: builds one of our benchmark drivers (the drkit-bench
# crate, bench/), in release mode, into $target/release/<bin>.
build_bench() {
  say "building $1 (release; log: $2)"
  mkdir -p "$(dirname "$2")"
  if ! cargo build --release -p drkit-bench --bin "$1" --locked >"$2" 2>&1; then
    tail -n 30 "$2" >&2
    die "the build failed; see $2"
  fi
}

# build_drkit <log>: builds the operator's binary `drkit` (crates/drkit), in
# release mode, into $target/release/drkit.
build_drkit() {
  say "building drkit (release; log: $1)"
  mkdir -p "$(dirname "$1")"
  if ! cargo build --release -p drkit --bin drkit --locked >"$1" 2>&1; then
    tail -n 30 "$1" >&2
    die "the build failed; see $1"
  fi
}

# timed [--in FILE] [--out FILE] <tool> <phase> <command...>: runs the
# command under GNU time (standard input from FILE or /dev/null; standard
# output to FILE or $work/<tool>-<phase>.out; standard error to
# $work/<tool>-<phase>.err) and records its wall seconds and peak memory:
#   seconds[<tool>.<phase>] and memory[<tool>.<phase>]  this run's
#   runs[<tool>.<phase>]                              every run's seconds, for `median`
#   peak[<tool>.<phase>], peak[<tool>]                 the highest peak memory
declare -A seconds memory runs peak
timed() {
  local input=/dev/null output=""
  while :; do
    case "$1" in
      --in) input="$2"; shift 2 ;;
      --out) output="$2"; shift 2 ;;
      *) break ;;
    esac
  done
  local tool="$1" phase="$2"
  shift 2
  local stats="$work/$tool-$phase.time" err="$work/$tool-$phase.err" secs kib
  output="${output:-$work/$tool-$phase.out}"
  if ! /usr/bin/time -f '%e %M' -o "$stats" "$@" <"$input" >"$output" 2>"$err"; then
    tail -n 20 "$err" >&2
    [ "$output" = "$work/$tool-$phase.out" ] && tail -n 20 "$output" >&2
    die "$tool $phase failed: $*"
  fi
  read -r secs kib <"$stats"
  local bytes=$((kib * 1024))
  seconds[$tool.$phase]="$secs"
  memory[$tool.$phase]="$bytes"
  runs[$tool.$phase]="${runs[$tool.$phase]:-} $secs"
  [ "$bytes" -gt "${peak[$tool.$phase]:-0}" ] && peak[$tool.$phase]="$bytes"
  [ "$bytes" -gt "${peak[$tool]:-0}" ] && peak[$tool]="$bytes"
  return 0
}

# descendants <pid>: every process below it.
descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

# kill_tree <pid...>: SIGKILL to the processes and all their descendants, at once.
kill_tree() {
  local pid all=()
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    all+=("$pid" $(descendants "$pid"))
  done
  [ ${#all[@]} -eq 0 ] || kill -9 "${all[@]}" 2>/dev/null || true
  # Reaped at once, so that the shell does not report them as killed.
  for pid in "$@"; do [ -z "$pid" ] || wait "$pid" 2>/dev/null || true; done
}

# median <numbers>: the median of space-separated numbers.
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END {
  print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
stored() { du -sb "$1" | cut -f1; }

# notes <tool> <phase>: what the tool said on standard error about its last run, indented.
notes() {
  local note
  while IFS= read -r note; do say "    $note"; done <"$work/$1-$2.err"
}

# line <name> <ours> <peer>: one result line, `name ours=… peer=… ratio=…`.
line() {
  awk -v name="$1" -v ours="$2" -v peer="$3" 'BEGIN {
    ratio = (peer > 0) ? sprintf("%.2f", ours / peer) : "inf"
    printf "%s ours=%s peer=%s ratio=%s\n", name, ours, peer, ratio
  }'
}
