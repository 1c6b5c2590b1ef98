#!/usr/bin/env bash
# Start an N-node chatd cluster as real processes on loopback, for a person
# to try: node i serves HTTP on 127.0.0.1:(8080+i), its admin API and
# metrics on 127.0.0.1:(9090+i) (loopback, so no token), gossips on
# 127.0.0.1:(7946+2i) and talks to peers on 127.0.0.1:(7947+2i), over
# mutual TLS with certificates of a throwaway CA, gossip encrypted.
#   hack/local-cluster.sh [N]      (default 3; Ctrl-C stops every node)
# Logs go to ${RINGCHAT_CLUSTER_LOGS:-/tmp/ringchat-cluster}/node-i.log, the
# key material (hack/peercerts) to its pki/ folder: the CA and the gossip key
# are kept across runs, the node certificates made afresh.
set -euo pipefail
n="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
logs="${RINGCHAT_CLUSTER_LOGS:-/tmp/ringchat-cluster}"
mkdir -p "$logs"
make -s -C "$root" build
bin="$root/bin/chatd"

pids=()
cleanup() {
	echo
	echo "stopping ${#pids[@]} nodes (SIGTERM: each drains its rooms to the others first)"
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait || true
}
trap cleanup INT TERM EXIT

pki="$logs/pki"
names=()
for i in $(seq 0 $((n - 1))); do names+=("node-$i"); done
(cd "$root" && go run ./hack/peercerts -dir "$pki" "${names[@]}")

for i in $(seq 0 $((n - 1))); do
	gossip=$((7946 + 2 * i))
	args=(--listen "127.0.0.1:$((8080 + i))" --admin-listen "127.0.0.1:$((9090 + i))" --node-name "node-$i" --allow-anonymous
		--gossip-addr "127.0.0.1:$gossip" --expected-nodes "$n" --drain-timeout 10s
		--peer-tls-cert-file "$pki/node-$i.crt" --peer-tls-key-file "$pki/node-$i.key"
		--peer-tls-ca-file "$pki/ca.crt" --gossip-keyring-file "$pki/gossip.keyring")
	if [ "$i" -eq 0 ]; then
		args+=(--bootstrap)
	else
		args+=(--join 127.0.0.1:7946)
	fi
	"$bin" "${args[@]}" >"$logs/node-$i.log" 2>&1 &
	pids+=($!)
done

for i in $(seq 0 $((n - 1))); do
	for _ in $(seq 1 100); do
		if curl -fsS "http://127.0.0.1:$((8080 + i))/readyz" >/dev/null 2>&1; then break; fi
		sleep 0.1
	done
done
echo "ringchat: $n nodes up; inter-node traffic over mutual TLS (CA $pki/ca.crt), gossip encrypted ($pki/gossip.keyring)"
for i in $(seq 0 $((n - 1))); do
	echo "  node-$i  chat: http://127.0.0.1:$((8080 + i))/   admin: http://127.0.0.1:$((9090 + i))/admin/cluster   log: $logs/node-$i.log"
done
echo "Open two nodes' pages in two tabs and chat across them. Ctrl-C stops the cluster."
wait
