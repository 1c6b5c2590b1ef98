#!/usr/bin/env bash
# Builds every Kubernetes binary a kind node needs from k8s.io/kubernetes
# source, through the Go module proxy only, into a cache folder outside the
# repository keyed by version:
#
#   ${RINGCHAT_CACHE:-$HOME/.cache/ringchat}/kind/k8s-<K8S_VERSION>/
#     kubeadm kubelet kubectl kube-apiserver kube-controller-manager
#     kube-scheduler kube-proxy
#
# The LAST line of stdout is the folder; progress goes to stderr. Idempotent:
# when every binary is there and reports the pinned version it exits at once.
# About 13 minutes cold on 2 cores; seconds when the Go build cache is warm.
#
# Knobs: K8S_VERSION (default v1.37.2), RINGCHAT_CACHE, SOURCE_DATE_EPOCH.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CACHE="${RINGCHAT_CACHE:-$HOME/.cache/ringchat}"
OUT="$CACHE/kind/k8s-$K8S_VERSION"
COMMANDS=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

log() { echo "k8s-node-binaries: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=hack/lib/k8s-module.sh
. "$(dirname "$0")/lib/k8s-module.sh"

up_to_date() {
	local c out
	for c in "${COMMANDS[@]}"; do
		[ -x "$OUT/$c" ] || return 1
	done
	out="$("$OUT/kubeadm" version -o short 2>/dev/null)" || return 1
	[ "$out" = "$K8S_VERSION" ] || return 1
	out="$("$OUT/kubelet" --version 2>/dev/null)" || return 1
	[ "$out" = "Kubernetes $K8S_VERSION" ] || return 1
}

if up_to_date; then
	log "up to date ($K8S_VERSION)"
	echo "$OUT"
	exit 0
fi
mkdir -p "$CACHE/kind"
exec 9>"$CACHE/kind/.lock-k8s-$K8S_VERSION"
flock 9
if up_to_date; then
	echo "$OUT"
	exit 0
fi

start=$SECONDS
work="$(mktemp -d "$CACHE/kind/.build-k8s-$K8S_VERSION.XXXXXX")"
trap 'rm -rf "$work"' EXIT
pkgs=()
for c in "${COMMANDS[@]}"; do
	pkgs+=("k8s.io/kubernetes/cmd/$c")
done
k8s_module_prepare "$work/mod" "${pkgs[@]}"
log "building ${COMMANDS[*]} $K8S_VERSION (CGO_ENABLED=0; ~13 minutes cold on 2 cores)"
mkdir -p "$work/out"
(cd "$work/mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$(k8s_ldflags)" -o "$work/out/" "${pkgs[@]}") >&2
mkdir -p "$OUT"
for c in "${COMMANDS[@]}"; do
	mv -f "$work/out/$c" "$OUT/$c"
done
up_to_date || die "built binaries in $OUT do not report $K8S_VERSION"
log "done in $((SECONDS - start))s"
echo "$OUT"
