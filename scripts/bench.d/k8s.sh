#!/usr/bin/env bash
# scripts/bench k8s: drkit's Kubernetes resource backup and restore against
# the seed's way, on one namespace of mixed kinds, in one run: a
# ResourceBackup of the namespace into a repository on disk against
# `kubectl get <kind> -n <ns> -o yaml > <kind>.yaml` for each kind, then,
# after the namespace is deleted, a ResourceRestore of that backup against
# `kubectl apply -f` of those files. Both run against dr-k8s-testkit's API
# server on loopback (no kube-apiserver installs here). The method, the
# figures and the environment variables that adjust it (DRKIT_BENCH_OBJECTS,
# DRKIT_BENCH_REPEAT, DRKIT_BENCH_DIR) are in BENCHMARKS.md. Needs kubectl
# (not in Debian's packages: its own release, which this script does not
# download) and GNU time (installed as root from Debian's packages).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

objects="${DRKIT_BENCH_OBJECTS:-5000}"
repeat="${DRKIT_BENCH_REPEAT:-3}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bench="$target/release/k8s_bench"
build_log="$target/bench-k8s-build.log"
namespace=bench
# The kinds the seed's way saves, one `kubectl get` each: the namespace
# first, so that `kubectl apply -f` of the directory makes it first.
kinds=(namespace configmaps secrets services serviceaccounts deployments statefulsets poddisruptionbudgets networkpolicies)

bench_name=k8s
# shellcheck source=scripts/lib/bench.sh
source "$root/scripts/lib/bench.sh"

# --- prerequisites ---------------------------------------------------------

missing=($(gnu_time_missing))
install_missing "${missing[@]}"
command -v kubectl >/dev/null 2>&1 ||
  die "kubectl is missing: install it from https://kubernetes.io/docs/tasks/tools/ (it is not in Debian's packages) and run again."
say "peer: $(kubectl version --client 2>/dev/null | head -n 1)"
positive DRKIT_BENCH_OBJECTS "$objects"
positive DRKIT_BENCH_REPEAT "$repeat"
if [ "$objects" -lt 5000 ]; then
  say "DRKIT_BENCH_OBJECTS=$objects is below 5000: a quick check, not a result"
fi

build_bench k8s_bench "$build_log"

# --- the API server ----------------------------------------------------------

mkdir -p "$base"
work="$(mktemp -d "$base/drkit-bench-k8s.XXXXXX")"
DRKIT_PASSWORD="bench-$(date +%s%N)"
export DRKIT_PASSWORD
server_pid=""
cleanup() {
  kill_tree "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bench" serve --dir "$work" >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^ready' "$work/serve.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || die "the API server did not start: $(cat "$work/serve.err")"
  sleep 0.1
done
grep -q '^ready' "$work/serve.out" || die "the API server did not start within 10 s"
kubeconfig="$work/kubeconfig"
k() { kubectl --kubeconfig "$kubeconfig" --context test "$@"; }
say "API server: $(cut -d' ' -f2 "$work/serve.out"); working in $work; every phase runs $repeat times per tool"

"$bench" seed --kubeconfig "$kubeconfig" --namespace "$namespace" --objects "$objects"
want="$("$bench" count --kubeconfig "$kubeconfig" --namespace "$namespace" | awk '$1 == "total" { print $2 }')"
say "seeded $want objects of $((${#kinds[@]} - 1)) kinds in namespace $namespace"

# The seed's way of backing up, as a script of its own so that it is timed
# whole: one `kubectl get -o yaml` per kind, into numbered files.
peer_dir="$work/peer-backup"
cat >"$work/peer-backup.sh" <<SCRIPT
set -euo pipefail
rm -rf "$peer_dir"
mkdir -p "$peer_dir"
i=0
for kind in ${kinds[*]}; do
  file="\$(printf '%s/%02d-%s.yaml' "$peer_dir" "\$i" "\$kind")"
  if [ "\$kind" = namespace ]; then
    kubectl --kubeconfig "$kubeconfig" --context test get namespace "$namespace" -o yaml >"\$file"
  else
    kubectl --kubeconfig "$kubeconfig" --context test get "\$kind" -n "$namespace" -o yaml >"\$file"
  fi
  i=\$((i + 1))
done
SCRIPT
# Restored: every seeded object back.
check_restored() {
  local got
  got="$("$bench" count --kubeconfig "$kubeconfig" --namespace "$namespace" | awk '$1 == "total" { print $2 }')"
  [ "$got" = "$want" ] || die "$1 restored $got objects, not $want"
}
wipe() { k delete namespace "$namespace" --wait=true >/dev/null; }

for ((run = 1; run <= repeat; run++)); do
  repo="$work/drkit-repo-$run"
  timed ours backup "$bench" backup --kubeconfig "$kubeconfig" --namespace "$namespace" --repo "$repo"
  # The namespace itself, and every object in it.
  [ "$(cat "$work/ours-backup.out")" -eq $((want + 1)) ] ||
    die "drkit backed up $(cat "$work/ours-backup.out") objects, not $((want + 1))"
  timed peer backup bash "$work/peer-backup.sh"
  wipe
  timed ours restore "$bench" restore --kubeconfig "$kubeconfig" --repo "$repo"
  check_restored drkit
  wipe
  timed peer restore kubectl --kubeconfig "$kubeconfig" --context test apply --validate=false -f "$peer_dir"
  check_restored "kubectl apply"
done
say "every restore brought back all $want objects"
say "peak memory: drkit $(mib "${peak[ours]}"), kubectl $(mib "${peak[peer]}")"
say "load after: $(uptime)"

both() { line "$1" "$(median "${runs[ours.$2]}")" "$(median "${runs[peer.$2]}")"; }
both k8s_backup_seconds backup
both k8s_restore_seconds restore
