#!/usr/bin/env bash
# Socket.IO figures of docs/benchmarks.md in one run: fan-out to N
# subscribers (stepped), rooms of 5, and idle memory per connection, each
# through chatd's native /ws, chatd's /socket.io/ (WebSocket transport) and
# the Node.js socket.io 4.8 server (chatd/socketio/testdata/node/bench-server.cjs),
# every server on a fresh process pinned to core SERVER_CORE (0), chatbench
# on core BENCH_CORE (1). Needs hack/ensure-node.sh's packages.
#
#   hack/bench-socketio.sh                 # the published sizes
#   QUICK=1 hack/bench-socketio.sh         # small indicative sizes (a busy machine)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/bin/bench-socketio}"
mkdir -p "$out" "$root/bin"
modules="$("$root/hack/ensure-node.sh" | tail -n 1)"
(cd "$root" && CGO_ENABLED=0 go build -o bin/chatd ./chatd/cmd/chatd && go build -o bin/chatbench ./chatd/cmd/chatbench)

server_core="${SERVER_CORE:-0}"
bench_core="${BENCH_CORE:-1}"
port=18090
# shellcheck disable=SC2034 # read through the nameref below
if [ -n "${QUICK:-}" ]; then
	fanout=(--subscribers 1000 --start-rate 100k --step-rate 100k --max-rate 1.5M --step-duration 2s --max-p99 1s)
	fanout_node=(--subscribers 1000 --start-rate 10k --step-rate 10k --max-rate 300k --step-duration 2s --max-p99 1s)
	rooms=(--connections 1000 --room-size 5 --rate 1 --duration 6s --warmup 2s)
	idle=(--connections 3000 --rooms 30 --hold 3s)
else
	fanout=(--subscribers 1000 --start-rate 100k --step-rate 100k --max-rate 3M --step-duration 4s --max-p99 1s)
	# The Node.js server falls behind long before 100k deliveries/s: finer steps.
	fanout_node=(--subscribers 1000 --start-rate 10k --step-rate 10k --max-rate 600k --step-duration 4s --max-p99 1s)
	rooms=(--connections 5000 --room-size 5 --rate 1 --duration 15s --warmup 5s)
	idle=(--connections 15000 --rooms 150 --hold 5s)
fi

pid=""
stop_server() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=""
	fi
}
trap stop_server EXIT

# start_server KIND: a fresh server of KIND (chatd or node) on $port.
start_server() {
	stop_server
	port=$((port + 1))
	if [ "$1" = node ]; then
		NODE_PATH="$modules" taskset -c "$server_core" node "$root/chatd/socketio/testdata/node/bench-server.cjs" 127.0.0.1 "$port" >"$out/server-$port.log" 2>&1 &
	else
		taskset -c "$server_core" "$root/bin/chatd" --allow-anonymous --listen "127.0.0.1:$port" --rate 1000000 --rate-burst 1000000 \
			--max-connections-per-ip 0 --max-connections 0 --log-level warn --node-name bench >"$out/server-$port.log" 2>&1 &
	fi
	pid=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "bench-socketio: server $1 did not listen on $port" >&2
	exit 1
}

for scenario in fanout rooms idle; do
	for target in native socketio node; do
		kind=chatd path=/ws
		case "$target" in
		socketio) path=/socket.io/ ;;
		node) kind=node path=/socket.io/ ;;
		esac
		start_server "$kind"
		if [ "$scenario" = fanout ] && [ "$target" = node ]; then
			declare -n args=fanout_node
		else
			declare -n args="$scenario"
		fi
		echo "== $scenario / $target (server pid $pid on core $server_core)" >&2
		taskset -c "$bench_core" "$root/bin/chatbench" "$scenario" --url "ws://127.0.0.1:$port$path" --server-pid "$pid" "${args[@]}" \
			>"$out/$scenario-$target.txt" 2>"$out/$scenario-$target.err" || echo "bench-socketio: $scenario/$target exited $?" >&2
		grep -E 'max sustained|RSS per connection|p99|delivered' "$out/$scenario-$target.txt" | head -5 >&2 || true
	done
done
echo "bench-socketio: reports in $out" >&2
