#!/usr/bin/env bash
# The kind end-to-end run behind `make e2e`:
#   engine → tools → node image → cluster → images → volume provisioner →
#   chart → ChatCluster → Go suite (e2e/, build tag e2e) → helm test of a
#   chart-made ChatCluster → delete the cluster.
# Everything it needs it installs or builds (see docs/testing.md for the cold
# and warm times); nothing is pulled from a registry.
#
# Knobs (environment):
#   KIND_NODE_IMAGE  use this node image instead of building one
#   KIND_WORKERS     worker nodes besides the control plane (default 2, so the
#                    chatd pods spread over two nodes; 0 for a one-node cluster)
#   E2E_KEEP=1       keep the cluster afterwards (kubeconfig path is printed)
#   E2E_RUN=regexp   run only the matching Go tests
#   E2E_ARTIFACTS    where logs go on failure (default /tmp/ringchat-e2e-artifacts)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HACK="$ROOT/hack"
CLUSTER_NAME="${E2E_CLUSTER_NAME:-ringchat-e2e}"
KIND_WORKERS="${KIND_WORKERS:-2}"
ARTIFACTS="${E2E_ARTIFACTS:-/tmp/ringchat-e2e-artifacts}"
OPERATOR_NS=ringchat-system
E2E_NS=ringchat-e2e
TAG=e2e
export RINGCHAT_CACHE="${RINGCHAT_CACHE:-$HOME/.cache/ringchat}"

log() { echo "e2e: $(date +%T) $*" >&2; }
die() { log "$*"; exit 1; }
step() { log "--- $* ($((SECONDS))s)"; }

# --- tools and images ----------------------------------------------------------------
step "Docker engine"
"$HACK/ensure-docker.sh"
step "kind and helm (Go module proxy)"
mapfile -t tools < <("$HACK/tools.sh" kind helm)
KIND="${tools[0]}"
HELM="${tools[1]}"
step "Kubernetes binaries and the kind node image"
NODE_IMAGE="$("$HACK/kind-node-image.sh" | tail -n 1)"
# A node image built here has no CNI daemon (kindnetd cannot be fetched
# offline), so this script wires pod networking itself; a stock kindest/node
# (KIND_NODE_IMAGE, where a registry is reachable) brings kindnetd.
offline_node=false
case "$NODE_IMAGE" in ringchat.local/kind-node:*) offline_node=true ;; esac
KUBECTL="$("$HACK/k8s-node-binaries.sh" | tail -n 1)/kubectl"
step "ringchat images"
"$HACK/build-image.sh" chatd "ringchat/chatd:$TAG" "$TAG" >/dev/null
"$HACK/build-image.sh" ringchat-operator "ringchat/ringchat-operator:$TAG" "$TAG" >/dev/null
"$HACK/build-image.sh" chatctl "ringchat/chatctl:$TAG" "$TAG" >/dev/null
# The rolling-upgrade test rolls the ChatCluster back to the previous
# release (hack/previous-release, built from this repository's history) and
# up again to the working tree. A clone without that history (shallow, or an
# archive) cannot build it: the test then rolls between two tags of the
# working tree's image, and says so in its log.
step "the previous release's chatd image"
PREVIOUS_RELEASE=""
if "$HACK/previous-release.sh" "ringchat/chatd:$TAG-previous" >/dev/null; then
	PREVIOUS_RELEASE="$(grep -v '^#' "$HACK/previous-release" | cut -d' ' -f1)"
else
	rc=$?
	[ "$rc" -eq 3 ] || die "hack/previous-release.sh failed (exit $rc)"
	log "WARNING: the previous release is not in this clone; TestRollingUpgrade rolls between two tags of the working tree"
	docker tag "ringchat/chatd:$TAG" "ringchat/chatd:$TAG-previous"
fi
step "volume provisioner images (local-path-provisioner, built offline)"
mapfile -t lpp_images < <("$HACK/local-path-provisioner.sh")
[ "${#lpp_images[@]}" -eq 2 ] || die "hack/local-path-provisioner.sh printed ${#lpp_images[@]} images, want 2"
PROVISIONER_IMAGE="${lpp_images[0]}"
HELPER_IMAGE="${lpp_images[1]}"

# --- cluster -----------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/ringchat-e2e.XXXXXX)"
export KUBECONFIG="$WORK/kubeconfig"
kubectl() { "$KUBECTL" "$@"; }

dump() {
	mkdir -p "$ARTIFACTS"
	log "dumping cluster state to $ARTIFACTS"
	kubectl get nodes -o wide >"$ARTIFACTS/nodes.txt" 2>&1 || true
	kubectl get all,chatclusters,pdb,cm,pvc,pv,storageclass,events -A -o wide >"$ARTIFACTS/objects.txt" 2>&1 || true
	kubectl get chatclusters -A -o yaml >"$ARTIFACTS/chatclusters.yaml" 2>&1 || true
	kubectl get events -A --sort-by=.lastTimestamp >"$ARTIFACTS/events.txt" 2>&1 || true
	local ns pod
	for ns in "$OPERATOR_NS" "$E2E_NS" kube-system local-path-storage; do
		for pod in $(kubectl get pods -n "$ns" -o name 2>/dev/null); do
			kubectl logs -n "$ns" "$pod" --all-containers --prefix --tail=-1 >"$ARTIFACTS/$ns-${pod#pod/}.log" 2>&1 || true
			kubectl logs -n "$ns" "$pod" --all-containers --prefix --previous >"$ARTIFACTS/$ns-${pod#pod/}.previous.log" 2>/dev/null || true
		done
	done
	"$KIND" export logs "$ARTIFACTS/kind" --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
	echo "----- events (last 40) -----" >&2
	tail -40 "$ARTIFACTS/events.txt" >&2 || true
	echo "----- operator log (last 40 lines) -----" >&2
	tail -q -n 40 "$ARTIFACTS/$OPERATOR_NS"-*.log >&2 2>/dev/null || true
}

finish() {
	local rc=$?
	if [ "$rc" -ne 0 ]; then
		dump
	fi
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		log "keeping cluster $CLUSTER_NAME: export KUBECONFIG=$KUBECONFIG"
	else
		"$KIND" delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
		rm -rf "$WORK"
	fi
	log "done in ${SECONDS}s (exit $rc)"
	exit "$rc"
}
trap finish EXIT

step "kind cluster $CLUSTER_NAME (1 control plane, $KIND_WORKERS workers) from $NODE_IMAGE"
"$KIND" delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
{
	cat <<-EOF
	kind: Cluster
	apiVersion: kind.x-k8s.io/v1alpha4
	EOF
	if $offline_node; then
		cat <<-EOF
		networking:
		  # kind's own CNI (kindnetd) is not served by the Go module proxy; the
		  # standard ptp plugin is configured per node below instead.
		  disableDefaultCNI: true
		EOF
	fi
	cat <<-EOF
	kubeadmConfigPatches:
	- |
	  kind: KubeletConfiguration
	  # Kubernetes >= 1.35 refuses cgroup v1 hosts (such as this project's CI
	  # VMs) unless told otherwise; harmless on cgroup v2.
	  failCgroupV1: false
	nodes:
	- role: control-plane
	EOF
	for _ in $(seq 1 "$KIND_WORKERS"); do
		echo "- role: worker"
	done
} >"$WORK/kind.yaml"
"$KIND" create cluster --name "$CLUSTER_NAME" --image "$NODE_IMAGE" --config "$WORK/kind.yaml" \
	--kubeconfig "$KUBECONFIG" --retain >&2

# Pod networking on a node image built here: each node's ptp plugin hands out
# the pod subnet the controller manager gave the node, and each node routes
# every other node's subnet through that node's address (all nodes share one
# Docker bridge) — what kindnetd does for IPv4. (ptp, not bridge, because
# kind's stock node images carry only ptp, host-local, loopback and portmap.)
wire_pod_network() {
	local n m nodes
	local -A cidr ip
	mapfile -t nodes < <("$KIND" get nodes --name "$CLUSTER_NAME")
	for n in "${nodes[@]}"; do
		kubectl wait node/"$n" --for=create --for=jsonpath='{.spec.podCIDR}' --timeout=120s >/dev/null ||
			die "node $n got no pod CIDR"
		cidr[$n]="$(kubectl get node "$n" -o jsonpath='{.spec.podCIDR}')"
		ip[$n]="$(kubectl get node "$n" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')"
	done
	for n in "${nodes[@]}"; do
		docker exec -i "$n" sh -c 'cat >/etc/cni/net.d/10-ringchat.conflist' <<-EOF
		{
		  "cniVersion": "1.0.0",
		  "name": "ringchat-e2e",
		  "plugins": [
		    {"type": "ptp", "ipMasq": true,
		     "ipam": {"type": "host-local", "ranges": [[{"subnet": "${cidr[$n]}"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
		    {"type": "portmap", "capabilities": {"portMappings": true}}
		  ]
		}
		EOF
		for m in "${nodes[@]}"; do
			[ "$m" = "$n" ] || docker exec "$n" ip route replace "${cidr[$m]}" via "${ip[$m]}"
		done
	done
}
if $offline_node; then
	step "pod network"
	wire_pod_network
fi
kubectl wait --for=condition=Ready nodes --all --timeout=180s >&2
kubectl -n kube-system rollout status deployment/coredns --timeout=180s >&2

step "load images into the nodes"
for img in "ringchat/chatd:$TAG" "ringchat/chatd:$TAG-previous" "ringchat/ringchat-operator:$TAG" "ringchat/chatctl:$TAG" \
	"$PROVISIONER_IMAGE" "$HELPER_IMAGE"; do
	"$KIND" load docker-image "$img" --name "$CLUSTER_NAME" >&2
done

# The chatd pods' volumes come from a real dynamic provisioner, the default
# StorageClass. kind installs a "standard" default class of its own; from a
# node image built here its provisioner does not exist (kind falls back to
# the in-tree host-path one, which no controller runs), so its default mark
# is taken off.
step "dynamic volume provisioner (local-path, default StorageClass)"
for sc in $(kubectl get storageclass -o name); do
	kubectl annotate "$sc" storageclass.kubernetes.io/is-default-class=false --overwrite >&2
done
sed -e "s#@PROVISIONER_IMAGE@#$PROVISIONER_IMAGE#" -e "s#@HELPER_IMAGE@#$HELPER_IMAGE#" \
	"$ROOT/e2e/testdata/local-path-provisioner.yaml" | kubectl apply -f - >&2
kubectl -n local-path-storage rollout status deployment/local-path-provisioner --timeout=180s >&2

step "helm install the operator"
"$HELM" install ringchat "$ROOT/charts/ringchat" --namespace "$OPERATOR_NS" --create-namespace \
	--set image.tag="$TAG" --set image.pullPolicy=Never --set replicaCount=1 \
	--set tests.image.tag="$TAG" --set tests.image.pullPolicy=Never \
	--wait --timeout 5m >&2

step "apply a 3-replica ChatCluster with storage"
kubectl create namespace "$E2E_NS" >&2
sed "s#@IMAGE@#ringchat/chatd:$TAG#" "$ROOT/e2e/testdata/chatcluster.yaml" | kubectl apply -n "$E2E_NS" -f - >&2
kubectl wait -n "$E2E_NS" chatcluster/chat --for=condition=Available --timeout=10m >&2

step "Go e2e suite"
(
	cd "$ROOT"
	E2E_ARTIFACTS="$ARTIFACTS" E2E_NAMESPACE="$E2E_NS" E2E_CLUSTER=chat E2E_PREVIOUS_IMAGE="ringchat/chatd:$TAG-previous" E2E_PREVIOUS_RELEASE="$PREVIOUS_RELEASE" E2E_CHATCTL_IMAGE="ringchat/chatctl:$TAG" \
		go test -tags e2e -count=1 -timeout 40m -v ${E2E_RUN:+-run "$E2E_RUN"} ./e2e/
)

# The chart's own path to a chat service: `helm upgrade --set cluster.enabled`
# then `helm test` (a chatctl Pod exchanging a message through the Service).
step "helm upgrade with cluster.enabled, then helm test"
kubectl delete namespace "$E2E_NS" --wait=true --timeout=3m >&2
"$HELM" upgrade ringchat "$ROOT/charts/ringchat" --namespace "$OPERATOR_NS" --reuse-values \
	--set cluster.enabled=true --set cluster.replicas=1 --set cluster.replicationFactor=1 \
	--set cluster.image="ringchat/chatd:$TAG" --wait --timeout 5m >&2
# The operator creates the ChatCluster from the chart's ConfigMap: wait for
# it to exist before waiting for its condition.
kubectl wait -n "$OPERATOR_NS" chatcluster/ringchat --for=create --timeout=2m >&2
kubectl wait -n "$OPERATOR_NS" chatcluster/ringchat --for=condition=Available --timeout=5m >&2
"$HELM" test ringchat --namespace "$OPERATOR_NS" --timeout 3m >&2
step "all passed"
