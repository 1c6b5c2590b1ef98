#!/usr/bin/env bash
# Measure durable history's figures (issue 12; docs/benchmarks.md) the way
# docs/benchmarks.md measures everything: every chatd pinned to one core
# (taskset -c $SERVER_CPU; a 3-node cluster shares that one core), chatbench
# on the other ($CLIENT_CPU), a fresh server (and fresh data dirs) per run.
#
#   hack/bench-durable.sh [--smoke] [--out DIR] FIGURE...
#
# FIGURE (any of, in any order; "all" for every one):
#   1 | ack          send→ack latency, memory-only and --data-dir, one node and
#                    3 nodes R=2, at 1k and 10k msgs/s (chatbench rooms)
#   2 | throughput   sustained publish rate per node, durable and memory-only
#                    (chatbench throughput)
#   3 | fanout       the fan-out figures with and without --data-dir,
#                    alternated (chatbench fanout, as in docs/benchmarks.md)
#   4 | 5 | store    1,000,000 messages in 10,000 rooms (chatbench fill), then
#                    cold history pages after --room-idle-ttl (history
#                    --wait-cold), $RESTARTS restarts timed to /readyz and to
#                    the first page (ready), cold pages after a restart
#   6 | rss          10,000,000 messages in 100,000 rooms, idle RSS of the
#                    node that stored them and of the node restarted on them
#
# --smoke runs every step at a tiny scale, to check the script and the
# scenarios, not to measure. Reports (chatbench's text output, one file per
# run), chatd logs and commands.log (every command run) go to --out
# (default /tmp/ringchat-bench-durable/<time>); data dirs to $BENCH_DATA
# (default <out>/data): put it on the disk you want measured, not a tmpfs.
# Knobs (environment): SERVER_CPU (0), CLIENT_CPU (1), BASE_PORT (18500),
# RESTARTS (3), READY_TIMEOUT seconds (600).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=hack/lib/bench.sh
. "$root/hack/lib/bench.sh"
smoke=0
out=""
figures=()
while [ $# -gt 0 ]; do
	case "$1" in
	--smoke) smoke=1 ;;
	--out)
		out="$2"
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) figures+=("$1") ;;
	esac
	shift
done
[ ${#figures[@]} -gt 0 ] || {
	echo "usage: $0 [--smoke] [--out DIR] FIGURE... (1 2 3 4 5 6, or ack throughput fanout store rss, or all)" >&2
	exit 2
}

server_cpu="${SERVER_CPU:-0}"
client_cpu="${CLIENT_CPU:-1}"
base_port="${BASE_PORT:-18500}"
restarts="${RESTARTS:-3}"
ready_timeout="${READY_TIMEOUT:-600}"
out="${out:-/tmp/ringchat-bench-durable/$(date +%Y%m%d-%H%M%S)}"
data="${BENCH_DATA:-$out/data}"
bench_init
mkdir -p "$data"
bench_build "smoke=$smoke"
echo "# data dirs on $(df -h --output=source,fstype "$data" | tail -1)" >>"$cmdlog"
if [ "$(stat -f -c %T "$data")" = tmpfs ]; then
	log "warning: $data is on a tmpfs: fsync costs nothing there; set BENCH_DATA to a directory on a real disk"
fi

# The limits that would otherwise refuse a benchmark's traffic.
chatd_flags=(--allow-anonymous --rate 1000000 --rate-burst 1000000
	--max-connections-per-ip 0 --max-connections 0 --max-rooms-per-node 0 --log-level warn)
# The 3-node runs link their nodes as production does: a certificate per
# node from a throwaway CA and a gossip keyring (hack/peercerts).
pki="$out/pki"
(cd "$root" && go run ./hack/peercerts -dir "$pki" node-0 node-1 node-2 >/dev/null)

pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready PORT: until /readyz answers 200.
wait_ready() {
	local deadline=$((SECONDS + ready_timeout))
	until curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || die "chatd on port $1 not ready within ${ready_timeout}s"
		sleep 0.05
	done
}

# admin_port PORT: the admin listener (/metrics) of the node serving
# clients on PORT.
admin_port() { echo $(($1 + 30)); }

# start_node NAME PORT ARG...: one chatd pinned to the server CPU, its
# admin listener on admin_port PORT; sets $started_pid. Its log goes to
# $out/NAME.log.
start_node() {
	local name="$1" port="$2"
	shift 2
	local cmd=(taskset -c "$server_cpu" "$chatd" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$(admin_port "$port")"
		--node-name "$name" "${chatd_flags[@]}" "$@")
	echo "+ ${cmd[*]}" >>"$cmdlog"
	"${cmd[@]}" >>"$out/$name.log" 2>&1 &
	started_pid=$!
	pids+=("$started_pid")
}

# stop_all: SIGTERM to every node at once (each drains and closes its
# store), then wait for them.
stop_all() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

# start_single MODE [ARG...]: one node on BASE_PORT; MODE durable gives it a
# fresh data dir ($data/single). Sets $urls (with the node's metrics
# endpoint) and $node_pid.
start_single() {
	local mode="$1"
	shift
	local args=("$@")
	if [ "$mode" = durable ]; then
		rm -rf "$data/single"
		args+=(--data-dir "$data/single")
	fi
	start_node single "$base_port" "${args[@]}"
	node_pid=$started_pid
	wait_ready "$base_port"
	urls=(--url "ws://127.0.0.1:$base_port/ws" --metrics-url "http://127.0.0.1:$(admin_port "$base_port")/metrics")
}

# start_cluster MODE: three nodes, R=2, --expected-nodes 3, all on the one
# server CPU, as docs/benchmarks.md's cross-node figures; durable: fresh
# data dirs. Sets $urls.
start_cluster() {
	local mode="$1" i
	urls=()
	for i in 0 1 2; do
		local port=$((base_port + i)) gossip=$((base_port + 10 + 2 * i))
		local args=(--gossip-addr "127.0.0.1:$gossip" --expected-nodes 3 --replication-factor 2
			--peer-tls-cert-file "$pki/node-$i.crt" --peer-tls-key-file "$pki/node-$i.key"
			--peer-tls-ca-file "$pki/ca.crt" --gossip-keyring-file "$pki/gossip.keyring")
		if [ "$i" -eq 0 ]; then
			args+=(--bootstrap)
		else
			args+=(--join "127.0.0.1:$((base_port + 10))")
		fi
		if [ "$mode" = durable ]; then
			rm -rf "$data/node-$i"
			args+=(--data-dir "$data/node-$i")
		fi
		start_node "node-$i" "$port" "${args[@]}"
		urls+=(--url "ws://127.0.0.1:$port/ws" --metrics-url "http://127.0.0.1:$(admin_port "$port")/metrics")
	done
	for i in 0 1 2; do wait_ready $((base_port + i)); done
}

failures=()
# bench REPORT ARG...: chatbench pinned to the client CPU; its report is
# printed and saved as $out/REPORT.txt.
bench() {
	local report="$1"
	shift
	local cmd=(taskset -c "$client_cpu" "$chatbench" "$@")
	echo "+ ${cmd[*]}" | tee -a "$cmdlog" >&2
	local rc=0
	"${cmd[@]}" >"$out/$report.txt" || rc=$?
	cat "$out/$report.txt"
	if [ "$rc" -ne 0 ]; then
		failures+=("$report (exit $rc)")
		log "$report: chatbench exited $rc"
	fi
}

# Scales: the figures' own, or tiny ones for --smoke.
if [ "$smoke" -eq 1 ]; then
	ack_conns=60 ack_rates=(200 1000) ack_duration=2s ack_warmup=500ms
	tp_rooms=50 tp_rates=(--rates "500,1000") tp_step=1s
	fan_stepped=(--subscribers 20 --rates "2k,4k" --step-duration 1s --max-p99 1s)
	fan_fixed=(--subscribers 20 --rates 1k --step-duration 1s --max-p99 1s)
	store_rooms=200 store_msgs=20 store_ttl=2s store_rate=200
	rss_rooms=500 rss_msgs=20 rss_ttl=2s rss_hold=2s
else
	ack_conns=5000 ack_rates=(1k 10k) ack_duration=30s ack_warmup=5s
	tp_rooms=1000 tp_rates=(--start-rate 10k --step-rate 10k --max-rate 150k) tp_step=10s
	fan_stepped=(--subscribers 999 --start-rate 1.3M --step-rate 200k --max-rate 2.1M --step-duration 4s --max-p99 1s)
	fan_fixed=(--subscribers 1000 --rates "10k,250k,500k" --step-duration 10s --max-p99 1s)
	store_rooms=10000 store_msgs=100 store_ttl=30s store_rate=500
	# The Go runtime forces a collection every 2 minutes: hold past it so
	# that the idle RSS is not the garbage of the fill.
	rss_rooms=100000 rss_msgs=100 rss_ttl=30s rss_hold=150s
fi

figure_ack() {
	local mode topo rate
	for mode in memory durable; do
		for topo in 1 3; do
			for rate in "${ack_rates[@]}"; do
				log "figure 1: send→ack, $mode, $topo node(s), $rate msgs/s"
				if [ "$topo" = 1 ]; then start_single "$mode"; else start_cluster "$mode"; fi
				bench "ack-$mode-${topo}n-$rate" rooms "${urls[@]}" --connections "$ack_conns" --room-size 5 \
					--total-rate "$rate" --duration "$ack_duration" --warmup "$ack_warmup"
				stop_all
			done
		done
	done
}

figure_throughput() {
	local mode
	for mode in durable memory; do
		log "figure 2: sustained publish rate, $mode, one node"
		start_single "$mode"
		bench "throughput-$mode" throughput "${urls[@]}" --rooms "$tp_rooms" --window 16 "${tp_rates[@]}" \
			--step-duration "$tp_step" --max-p99 50ms --warmup 2s
		stop_all
	done
}

figure_fanout() {
	local round mode
	for round in 1 2; do
		for mode in memory durable; do
			log "figure 3: fan-out, $mode, round $round"
			start_single "$mode"
			bench "fanout-stepped-$mode-$round" fanout "${urls[@]}" "${fan_stepped[@]}"
			stop_all
			start_single "$mode"
			bench "fanout-fixed-$mode-$round" fanout "${urls[@]}" "${fan_fixed[@]}"
			stop_all
		done
	done
}

figure_store() {
	local fill=(--rooms "$store_rooms" --messages-per-room "$store_msgs" --room-prefix fill)
	log "figures 4 and 5: fill $((store_rooms * store_msgs)) messages in $store_rooms rooms"
	start_single durable --room-idle-ttl "$store_ttl"
	bench store-fill fill "${urls[@]}" "${fill[@]}" --text-size 100 --connections 32 --batch 50 --window 64
	log "figure 4: cold pages once the rooms passed --room-idle-ttl $store_ttl"
	bench store-history-idle history "${urls[@]}" "${fill[@]}" --wait-cold 10m --rate "$store_rate" --limit 50
	local i
	for i in $(seq 1 "$restarts"); do
		stop_all
		log "figure 5: restart $i of $restarts on $(du -sh "$data/single" | cut -f1) of data"
		start_node single "$base_port" --data-dir "$data/single" --room-idle-ttl "$store_ttl"
		node_pid=$started_pid
		bench "store-ready-$i" ready "${urls[@]}" --server-pid "$node_pid" "${fill[@]}" --timeout "${ready_timeout}s" --hold 5s
		if [ "$i" = 1 ]; then
			log "figure 4: cold pages after a restart"
			bench store-history-restart history "${urls[@]}" "${fill[@]}" --rate "$store_rate" --limit 50
		fi
	done
	stop_all
}

figure_rss() {
	local fill=(--rooms "$rss_rooms" --messages-per-room "$rss_msgs" --room-prefix fill)
	log "figure 6: fill $((rss_rooms * rss_msgs)) messages in $rss_rooms rooms, then idle"
	start_single durable --room-idle-ttl "$rss_ttl"
	bench rss-fill fill "${urls[@]}" "${fill[@]}" --text-size 100 --connections 64 --batch 100 --window 64 \
		--settle 15m --hold "$rss_hold"
	stop_all
	log "figure 6: restarted on $(du -sh "$data/single" | cut -f1) of data, then idle"
	start_node single "$base_port" --data-dir "$data/single" --room-idle-ttl "$rss_ttl"
	node_pid=$started_pid
	bench rss-ready ready "${urls[@]}" --server-pid "$node_pid" "${fill[@]}" --timeout "${ready_timeout}s" --hold "$rss_hold"
	stop_all
}

done_store=0
for f in "${figures[@]}"; do
	case "$f" in
	all) set -- ack throughput fanout store rss ;;
	*) set -- "$f" ;;
	esac
	for g in "$@"; do
		case "$g" in
		1 | ack) figure_ack ;;
		2 | throughput) figure_throughput ;;
		3 | fanout) figure_fanout ;;
		4 | 5 | store)
			if [ "$done_store" -eq 0 ]; then
				figure_store
				done_store=1
			fi
			;;
		6 | rss) figure_rss ;;
		*) die "unknown figure $g (1 2 3 4 5 6, ack throughput fanout store rss, all)" ;;
		esac
	done
done

log "reports in $out"
for r in "$out"/*.txt; do
	printf '  %-40s %s\n' "$(basename "$r")" "$(grep -m1 '^result:' "$r" || echo 'no result')"
done
if [ ${#failures[@]} -gt 0 ]; then
	log "failed: ${failures[*]}"
	exit 1
fi
