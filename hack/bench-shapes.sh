#!/usr/bin/env bash
# Measure the realistic shapes of issue 17 (docs/benchmarks.md, "Realistic
# shapes") against chatd with its PRODUCTION defaults: HS256 JWT (no
# --allow-anonymous), the per-connection rate limit, the per-IP cap, the
# connections spread over 20 loopback source addresses. chatd is pinned to
# one core ($SERVER_CPU), chatbench to the other ($CLIENT_CPU); a fresh
# server per run.
#
#   hack/bench-shapes.sh [--out DIR] SHAPE...
#
# SHAPE (any of, in order; "all" for every one):
#   calibrate   the cost of one loopback write on the server's core (the
#               floor the fan-out figures are compared with)
#   many        125 publishers among 1,000 subscribers of one room, stepped
#               to 1.5M deliveries/s, --rule sustain, $RUNS runs
#   single      one publisher into the same room, stepped (the older figure)
#   rooms       5,000 connections in rooms of 5, 1 msg/s each (25k
#               deliveries/s), $RUNS runs
#   idle        15,000 idle connections over 150 rooms: RSS per connection
#   storm       10,000 connections joining rooms of 100, then all reconnecting
#               and resuming at once
#   reconnect   15,000 connections in rooms of 100 reconnecting at once
#
# Knobs (environment): SERVER_CPU (0), CLIENT_CPU (1), PORT (18090), RUNS (3),
# NICE (0; on a machine others use, -20 as root keeps their jobs from
# taking the measured cores — say so when you publish), FLOOR (the
# per-write floor for --write-floor; default: what calibrate printed in this
# run, else none), CHATD_EXTRA (more chatd flags, e.g. --write-coalesce 0).
# Reports go to --out (default /tmp/ringchat-bench-shapes/<time>), one file
# per run, plus commands.log.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=hack/lib/bench.sh
. "$root/hack/lib/bench.sh"
out=""
shapes=()
while [ $# -gt 0 ]; do
	case "$1" in
	--out)
		out="$2"
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	all) shapes+=(calibrate many single rooms idle storm reconnect) ;;
	*) shapes+=("$1") ;;
	esac
	shift
done
[ ${#shapes[@]} -gt 0 ] || {
	echo "usage: $0 [--out DIR] SHAPE... (calibrate many single rooms idle storm reconnect, or all)" >&2
	exit 2
}

server_cpu="${SERVER_CPU:-0}"
client_cpu="${CLIENT_CPU:-1}"
port="${PORT:-18090}"
admin=$((port + 1000))
runs="${RUNS:-3}"
nice_level="${NICE:-0}"
floor="${FLOOR:-}"
read -r -a extra <<<"${CHATD_EXTRA:-}"
out="${out:-/tmp/ringchat-bench-shapes/$(date +%Y%m%d-%H%M%S)}"
bench_init
bench_build "nice=$nice_level"

secret="$out/jwt-secret"
head -c 48 /dev/urandom | base64 >"$secret"
chmod 600 "$secret"
client=(--url "ws://127.0.0.1:$port/ws" --metrics-url "http://127.0.0.1:$admin/metrics"
	--token-secret-file "$secret" --source-addrs 20)

pid=""
stop() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=""
	fi
}
trap stop EXIT
trap 'exit 130' INT TERM

# start: a fresh chatd with its production defaults (the JWT secret is the
# only required flag; the admin listener serves /metrics).
start() {
	local cmd=(nice -n "$nice_level" taskset -c "$server_cpu" "$chatd" --listen "127.0.0.1:$port"
		--admin-listen "127.0.0.1:$admin" --jwt-secret-file "$secret" --log-level warn "${extra[@]}")
	echo "+ ${cmd[*]}" >>"$cmdlog"
	"${cmd[@]}" >>"$out/chatd.log" 2>&1 &
	pid=$!
	local deadline=$((SECONDS + 30))
	until curl -fsS -o /dev/null "http://127.0.0.1:$admin/readyz" 2>/dev/null &&
		curl -fsS -o /dev/null "http://127.0.0.1:$admin/metrics" 2>/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || die "chatd not ready within 30s"
		kill -0 "$pid" 2>/dev/null || die "chatd exited (see $out/chatd.log)"
		sleep 0.05
	done
}

# bench NAME ARG...: one chatbench run on the client CPU against a fresh
# server; its report goes to $out/NAME.txt and stdout.
bench() {
	local name="$1"
	shift
	start
	local cmd=(nice -n "$nice_level" taskset -c "$client_cpu" "$chatbench" "$@" "${client[@]}" --quiet)
	echo "+ ${cmd[*]}" >>"$cmdlog"
	log "$name"
	"${cmd[@]}" | tee "$out/$name.txt" || log "$name: chatbench exited $?"
	stop
}

floorflag() { [ -z "$floor" ] || echo "--write-floor=$floor"; }

for shape in "${shapes[@]}"; do
	case "$shape" in
	calibrate)
		cmd=(nice -n "$nice_level" taskset -c "$server_cpu" "$chatbench" calibrate)
		echo "+ ${cmd[*]}" >>"$cmdlog"
		log calibrate
		"${cmd[@]}" | tee "$out/calibrate.txt"
		if [ -z "${FLOOR:-}" ]; then
			floor="$(sed -n 's/.*--write-floor \([0-9.]*[µnm]*s\).*/\1/p' "$out/calibrate.txt" | head -1)"
			log "write floor: ${floor:-unknown}"
		fi
		;;
	many)
		for i in $(seq "$runs"); do
			# shellcheck disable=SC2046 # floorflag is one word or none
			bench "many-$i" fanout --subscribers 1000 --publishers 125 --rule sustain --max-p99 500ms \
				--rates 100k,250k,500k,750k,1M,1.25M,1.5M --step-duration 5s --all-steps $(floorflag)
		done
		;;
	single)
		# One publisher at 1.5M deliveries/s sends 1,500 msgs/s: far above
		# the production rate limit (20/s), so this run alone lifts it.
		saved=("${extra[@]}")
		extra+=(--rate 1000000 --rate-burst 1000000)
		# shellcheck disable=SC2046
		bench single fanout --subscribers 1000 --publishers 1 --rule sustain --max-p99 500ms \
			--rates 500k,1M,1.5M,2M --step-duration 5s --all-steps --server-rate 1000000 $(floorflag)
		extra=("${saved[@]}")
		;;
	rooms)
		for i in $(seq "$runs"); do
			# shellcheck disable=SC2046
			bench "rooms-$i" rooms --connections 5000 --room-size 5 --rate 1 --duration 20s --warmup 5s $(floorflag)
		done
		;;
	idle) bench idle idle --connections 15000 --rooms 150 --hold 10s ;;
	storm) bench storm storm --connections 10000 --room-size 100 ;;
	reconnect) bench reconnect storm --connections 15000 --room-size 100 ;;
	*) die "unknown shape $shape" ;;
	esac
done
log "reports in $out"
