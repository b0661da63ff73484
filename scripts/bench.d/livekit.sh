#!/usr/bin/env bash
# scripts/bench livekit: drkit's LiveKit snapshot and restore against the
# seed's way of scripting it, on one server's rooms, in one run: a
# LiveKitSnapshot into a repository on disk against one `curl` POST per
# Twirp call (ListRooms, then ListParticipants and ListDispatch for each
# room, ListEgress, ListIngress and the SIP lists), each answer parsed with
# `jq`, into one JSON file; then a LiveKitRestore of that snapshot onto an
# empty server against one `curl` POST per CreateRoom, CreateDispatch,
# egress start, CreateIngress and SIP create, the bodies built with `jq`
# from that file; then the bytes two more snapshots store when nothing
# changed, against that file's size. Both run against dr-livekit-testkit's
# LiveKit stand-in (no livekit-server installs here). The method, the
# figures and the environment variables that adjust it (DRKIT_BENCH_ROOMS,
# DRKIT_BENCH_REPEAT, DRKIT_BENCH_DIR) are in BENCHMARKS.md. Needs curl, jq
# and GNU time (installed as root from Debian's packages); it downloads
# nothing else.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

rooms="${DRKIT_BENCH_ROOMS:-10000}"
# The peer starts tens of thousands of processes: one run each by default.
repeat="${DRKIT_BENCH_REPEAT:-1}"
base="${DRKIT_BENCH_DIR:-${TMPDIR:-/tmp}}"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bench="$target/release/livekit_bench"
build_log="$target/bench-livekit-build.log"
# What livekit_bench serve puts in each room.
participants_per_room=5

bench_name=livekit
# shellcheck source=scripts/lib/bench.sh
source "$root/scripts/lib/bench.sh"

# --- the peer: the seed's way, done properly --------------------------------

# Functions of their own, exported, so that each is timed whole as one
# `bash -c`. Sequential, one curl per Twirp call and at most one jq per
# answer, as a script does it. The tokens are minted beforehand by
# `livekit_bench tokens` (minting is not what is compared): the file's
# first line is a token with roomList, roomCreate, roomRecord, ingressAdmin
# and sip.admin, then `<room> <token>` with roomAdmin for that room, which
# LiveKit wants for ListParticipants, ListDispatch and CreateDispatch.

# twirp <token> <url> <Service/Method> <body>: one call, its JSON answer on
# standard output; an error answer fails it.
twirp() {
  curl -sS -f -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $1" \
    --data "$4" "$2/twirp/livekit.$3"
}

# load_tokens <file>: sets `admin` and the associative array `token`.
load_tokens() {
  local room tok
  {
    read -r admin
    while read -r room tok; do token[$room]="$tok"; done
  } <"$1"
}

# peer_snapshot <url> <tokens> <out.json>: the server's state into one JSON
# file: {rooms: [{room, participants, agentDispatches}], egress, ingress,
# sipInboundTrunks, sipOutboundTrunks, sipDispatchRules}.
peer_snapshot() {
  local url="$1" out="$3" parts room info participants dispatches admin
  declare -A token
  load_tokens "$2"
  parts="$(mktemp -d "$out.parts.XXXXXX")"
  # Each room's name, then its settings (fields LiveKit leaves out when
  # empty are left out here too, so that they can be sent back as they are).
  twirp "$admin" "$url" RoomService/ListRooms '{}' |
    jq -r '.rooms[]? | .name, ({name, metadata, emptyTimeout, departureTimeout, maxParticipants}
      | with_entries(select(.value != null)) | tojson)' >"$parts/rooms"
  while IFS= read -r room && IFS= read -r info; do
    participants="$(twirp "${token[$room]}" "$url" RoomService/ListParticipants "{\"room\":\"$room\"}" |
      jq -c '[.participants[]? | {identity, name, metadata, attributes, permission}
        | with_entries(select(.value != null))]')"
    dispatches="$(twirp "${token[$room]}" "$url" AgentDispatchService/ListDispatch "{\"room\":\"$room\"}" |
      jq -c '[.agentDispatches[]? | del(.id, .room, .state)]')"
    printf '{"room":%s,"participants":%s,"agentDispatches":%s}\n' "$info" "$participants" "$dispatches"
  done <"$parts/rooms" >"$parts/rooms.jsonl"
  twirp "$admin" "$url" Egress/ListEgress '{"active":true}' | jq -c '.items // []' >"$parts/egress"
  twirp "$admin" "$url" Ingress/ListIngress '{}' | jq -c '.items // [] | map(del(.state))' >"$parts/ingress"
  twirp "$admin" "$url" SIP/ListSIPInboundTrunk '{}' | jq -c '.items // []' >"$parts/inbound"
  twirp "$admin" "$url" SIP/ListSIPOutboundTrunk '{}' | jq -c '.items // []' >"$parts/outbound"
  twirp "$admin" "$url" SIP/ListSIPDispatchRule '{}' | jq -c '.items // []' >"$parts/rules"
  {
    printf '{"rooms":['
    paste -sd, "$parts/rooms.jsonl"
    printf '],"egress":%s,"ingress":%s,"sipInboundTrunks":%s,"sipOutboundTrunks":%s,"sipDispatchRules":%s}\n' \
      "$(<"$parts/egress")" "$(<"$parts/ingress")" "$(<"$parts/inbound")" "$(<"$parts/outbound")" "$(<"$parts/rules")"
  } >"$out"
  rm -rf "$parts"
}

# peer_restore <url> <tokens> <saved.json>: gives the saved state back to an
# empty server: each room (CreateRoom), its agent dispatches (but the
# unnamed agent's, which CreateRoom makes, as LiveKit does), the running
# egress started again with their requests, the ingress, the SIP trunks,
# and the dispatch rules naming the new trunk ids.
peer_restore() {
  local url="$1" saved="$3" room body method old new ids admin
  declare -A token
  load_tokens "$2"
  ids="$(mktemp "$saved.trunk-ids.XXXXXX")"
  jq -c '.rooms[].room' "$saved" |
    while IFS= read -r body; do
      twirp "$admin" "$url" RoomService/CreateRoom "$body" >/dev/null
    done
  jq -r '.rooms[] | .room.name as $r | .agentDispatches
    | (map((.agentName // "") == "" and (.metadata // "") == "") | index(true)) as $auto
    | to_entries[] | select(.key != $auto) | $r, (.value + {room: $r} | tojson)' "$saved" |
    while IFS= read -r room && IFS= read -r body; do
      twirp "${token[$room]}" "$url" AgentDispatchService/CreateDispatch "$body" >/dev/null
    done
  jq -r '{roomComposite: "StartRoomCompositeEgress", web: "StartWebEgress",
      participant: "StartParticipantEgress", trackComposite: "StartTrackCompositeEgress",
      track: "StartTrackEgress", egress: "StartEgress"} as $start
    | .egress[] | to_entries[] | select($start[.key]) | $start[.key], (.value | tojson)' "$saved" |
    while IFS= read -r method && IFS= read -r body; do
      twirp "$admin" "$url" "Egress/$method" "$body" >/dev/null
    done
  jq -c '.ingress[] | {inputType, name, roomName, participantIdentity, participantName,
      participantMetadata, bypassTranscoding, enableTranscoding, audio, video, enabled}
      + (if .inputType == "URL_INPUT" then {url} else {} end)
    | with_entries(select(.value != null))' "$saved" |
    while IFS= read -r body; do
      twirp "$admin" "$url" Ingress/CreateIngress "$body" >/dev/null
    done
  jq -r '(.sipInboundTrunks[] | "CreateSIPInboundTrunk", .sipTrunkId,
      ({trunk: del(.sipTrunkId, .createdAt, .updatedAt)} | tojson)),
    (.sipOutboundTrunks[] | "CreateSIPOutboundTrunk", .sipTrunkId,
      ({trunk: del(.sipTrunkId, .createdAt, .updatedAt)} | tojson))' "$saved" |
    while IFS= read -r method && IFS= read -r old && IFS= read -r body; do
      new="$(twirp "$admin" "$url" "SIP/$method" "$body" | jq -r .sipTrunkId)"
      echo "$old $new"
    done >"$ids"
  jq -r --rawfile ids "$ids" '($ids | split("\n") | map(select(. != "") | split(" ") | {(.[0]): .[1]})
      | add // {}) as $new
    | .sipDispatchRules[] | del(.sipDispatchRuleId, .createdAt, .updatedAt)
    | (if .trunkIds then .trunkIds |= map($new[.] // .) else . end)
    | {dispatchRule: .} | tojson' "$saved" |
    while IFS= read -r body; do
      twirp "$admin" "$url" SIP/CreateSIPDispatchRule "$body" >/dev/null
    done
  rm -f "$ids"
}
export -f twirp load_tokens peer_snapshot peer_restore

# --- prerequisites ---------------------------------------------------------

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
missing+=($(gnu_time_missing))
install_missing "${missing[@]}"
say "peer: $(curl --version | head -n 1 | cut -d' ' -f1-2) and $(jq --version), from bash $BASH_VERSION"
positive DRKIT_BENCH_ROOMS "$rooms"
positive DRKIT_BENCH_REPEAT "$repeat"
if [ "$rooms" -lt 10000 ]; then
  say "DRKIT_BENCH_ROOMS=$rooms is below 10000: a quick check, not a result"
fi

build_bench livekit_bench "$build_log"

# --- the servers -------------------------------------------------------------

mkdir -p "$base"
work="$(mktemp -d "$base/drkit-bench-livekit.XXXXXX")"
DRKIT_PASSWORD="bench-$(date +%s%N)"
export DRKIT_PASSWORD
server_pid=""
cleanup() {
  kill_tree "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "working in $work"
say "load before: $(uptime)"
# The source, filled, and an empty server for each restore.
"$bench" serve --dir "$work" --rooms "$rooms" --targets $((2 * repeat)) >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 3000); do
  grep -q '^ready' "$work/serve.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || die "the LiveKit stand-in did not start: $(cat "$work/serve.err")"
  sleep 0.1
done
grep -q '^ready' "$work/serve.out" || die "the LiveKit stand-in was not filled within 300 s"
# shellcheck source=/dev/null
source "$work/servers.env"
export LIVEKIT_API_KEY LIVEKIT_API_SECRET
read -ra targets <<<"$LK_TARGETS"
read -ra target_metrics <<<"$LK_TARGET_METRICS"
say "source $LK_SOURCE: $(tail -n 1 "$work/serve.err")"
say "  in each room: $participants_per_room participants; one room in 100 with a room-composite egress," \
  "one in 10 with an agent dispatch besides the unnamed agent's; 10 ingress, 8 SIP trunks, 8 dispatch rules"

"$bench" tokens --url "$LK_SOURCE" --out "$work/tokens" 2>"$work/tokens.err" ||
  die "minting the tokens failed: $(cat "$work/tokens.err")"
say "tokens for the curl script (untimed): $(tail -n 1 "$work/tokens.err")"

# calls <metrics url>: the Twirp calls the server has answered, from its
# livekit_node_twirp_request_status counters.
calls() { curl -s "$1" | awk '/^livekit_node_twirp_request_status[{]/ { n += $NF } END { print n + 0 }'; }
# rate <count> <seconds>: per second.
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", (t > 0) ? n / t : 0 }'; }
declare -A count

ours_snapshot() {
  local before
  before="$(calls "$LK_SOURCE_METRICS")"
  timed ours snapshot "$bench" snapshot --url "$LK_SOURCE" --repo "$repo"
  count[ours.snapshot]=$(($(calls "$LK_SOURCE_METRICS") - before))
  read -r _ got_rooms _ got_participants _ <"$work/ours-snapshot.out"
  [ "$got_rooms" = "$rooms" ] && [ "$got_participants" = $((rooms * participants_per_room)) ] ||
    die "drkit's snapshot holds $got_rooms rooms and $got_participants participants: $(cat "$work/ours-snapshot.out")"
}
peer_snapshot_run() {
  local before got
  before="$(calls "$LK_SOURCE_METRICS")"
  timed peer snapshot bash -c 'set -euo pipefail; peer_snapshot "$@"' peer_snapshot "$LK_SOURCE" "$work/tokens" "$peer_json"
  count[peer.snapshot]=$(($(calls "$LK_SOURCE_METRICS") - before))
  got="$(jq -r '"\(.rooms | length) \([.rooms[].participants | length] | add // 0)"' "$peer_json")"
  [ "$got" = "$rooms $((rooms * participants_per_room))" ] ||
    die "the curl script's file holds $got rooms and participants, not $rooms $((rooms * participants_per_room))"
}
ours_restore() {
  timed ours restore "$bench" restore --url "${targets[$1]}" --repo "$repo"
  count[ours.restore]="$(calls "${target_metrics[$1]}")"
}
peer_restore_run() {
  timed peer restore bash -c 'set -euo pipefail; peer_restore "$@"' peer_restore "${targets[$1]}" "$work/tokens" "$peer_json"
  count[peer.restore]="$(calls "${target_metrics[$1]}")"
}
check() {
  "$bench" check --source "$LK_SOURCE" --target "${targets[$2]}" >"$work/check.out" 2>"$work/check.err" ||
    die "$1's restore is not the source: $(cat "$work/check.err")"
}

for ((run = 1; run <= repeat; run++)); do
  repo="$work/drkit-repo-$run"
  peer_json="$work/peer-$run.json"
  ours_target=$((2 * run - 2))
  peer_target=$((2 * run - 1))
  # A new repository for each run, created beforehand (its key derivation
  # is not timed; opening it, with its own, is). The tools take turns.
  "$bench" init --repo "$repo" >"$work/init.log" 2>&1 || die "creating the repository failed: $(cat "$work/init.log")"
  if [ $((run % 2)) -eq 1 ]; then
    peer_snapshot_run
    ours_snapshot
    peer_restore_run "$peer_target"
    ours_restore "$ours_target"
  else
    ours_snapshot
    peer_snapshot_run
    ours_restore "$ours_target"
    peer_restore_run "$peer_target"
  fi
  check drkit "$ours_target"
  check "the curl script" "$peer_target"
  say "run $run: snapshot drkit ${seconds[ours.snapshot]} s (${count[ours.snapshot]} calls," \
    "$(rate "${count[ours.snapshot]}" "${seconds[ours.snapshot]}") calls/s), curl+jq ${seconds[peer.snapshot]} s" \
    "(${count[peer.snapshot]} calls, $(rate "${count[peer.snapshot]}" "${seconds[peer.snapshot]}") calls/s)"
  say "  restore drkit ${seconds[ours.restore]} s (${count[ours.restore]} calls," \
    "$(rate "${count[ours.restore]}" "${seconds[ours.restore]}") calls/s), curl+jq ${seconds[peer.restore]} s" \
    "(${count[peer.restore]} calls, $(rate "${count[peer.restore]}" "${seconds[peer.restore]}") calls/s)"
  say "  both restores hold what the source does: $(cat "$work/check.out")"
done
say "drkit's snapshot: $(cat "$work/ours-snapshot.out")"
notes ours snapshot
say "drkit's restore (created+found, by kind): $(cat "$work/ours-restore.out")"
notes ours restore
peer_bytes="$(stat -c %s "$peer_json")"
say "the curl script's JSON file: $peer_bytes bytes"

# --- a snapshot every minute, nothing changed ------------------------------------

# The last run's repository holds a full snapshot; two more on it as a base
# find the state unchanged. What each adds to the repository directory
# (`du -sb`) against the file the curl script writes for that minute, the
# same as the one above (nothing changed).
first_stored="$(stored "$repo")"
timed ours second "$bench" snapshot --url "$LK_SOURCE" --repo "$repo"
second_stored="$(stored "$repo")"
timed ours third "$bench" snapshot --url "$LK_SOURCE" --repo "$repo"
third_stored="$(stored "$repo")"
grep -q 'unchanged since' "$work/ours-second.err" && grep -q 'unchanged since' "$work/ours-third.err" ||
  die "a snapshot of the unchanged state stored it again: $(cat "$work/ours-second.err" "$work/ours-third.err")"
grown_second=$((second_stored - first_stored))
grown_third=$((third_stored - second_stored))
unchanged=$((grown_second > grown_third ? grown_second : grown_third))
say "unchanged: the second snapshot added $grown_second bytes in ${seconds[ours.second]} s, the third" \
  "$grown_third bytes in ${seconds[ours.third]} s (the larger counts); the full one's repository: $first_stored bytes"
say "peak memory: drkit $(mib "${peak[ours]}"), the curl script $(mib "${peak[peer]}")"
say "load after: $(uptime)"

both() { line "$1" "$(median "${runs[ours.$2]}")" "$(median "${runs[peer.$2]}")"; }
both snapshot_seconds snapshot
both restore_seconds restore
line unchanged_snapshot_stored_bytes "$unchanged" "$peer_bytes"
