#!/usr/bin/env bash
# Builds the control-plane binaries envtest needs (kube-apiserver, etcd, and
# kubectl) from source, through the Go module proxy only, into a cache folder
# outside the repository, keyed by the Kubernetes version:
#
#   ${RINGCHAT_CACHE:-$HOME/.cache/ringchat}/envtest/k8s-<K8S_VERSION>/
#
#   KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go test ./controllers/...
#
# The LAST line of stdout is the asset folder; progress goes to stderr.
# Idempotent: when the binaries are there and report the pinned versions it
# prints the folder and exits at once. A lock (flock) keeps concurrent runs
# from building the same thing twice.
#
# How: see hack/lib/k8s-module.sh (a throw-away module that requires
# k8s.io/kubernetes and replaces its staging modules with their releases).
# etcd is built in a second throw-away module (its dependency set differs).
#
# Knobs (environment):
#   K8S_VERSION   Kubernetes release to build       (default v1.37.2)
#   ETCD_VERSION  go.etcd.io/etcd/server/v3 release (default v3.6.16)
#   RINGCHAT_CACHE cache root                       (default ~/.cache/ringchat)
#   SOURCE_DATE_EPOCH build date stamped into the binaries (default: the
#                 release time of k8s.io/kubernetes on the module proxy, so
#                 rebuilds are reproducible)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${RINGCHAT_CACHE:-$HOME/.cache/ringchat}"
ENVTEST_ROOT="$CACHE/envtest"
ASSETS="$ENVTEST_ROOT/k8s-$K8S_VERSION"

log() { echo "envtest-assets: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=hack/lib/k8s-module.sh
. "$(dirname "$0")/lib/k8s-module.sh"
command -v go >/dev/null 2>&1 || die "go is not on PATH"

# up_to_date succeeds when every binary is there and reports the pinned version.
# (The output is captured before matching: `cmd | grep -q` under pipefail fails
# at random when grep exits early and cmd dies of SIGPIPE.)
up_to_date() {
	local out
	[ -x "$ASSETS/kube-apiserver" ] && [ -x "$ASSETS/etcd" ] && [ -x "$ASSETS/kubectl" ] || return 1
	out="$("$ASSETS/kube-apiserver" --version 2>/dev/null)" || return 1
	grep -qx "Kubernetes $K8S_VERSION" <<<"$out" || return 1
	out="$("$ASSETS/etcd" --version 2>/dev/null)" || return 1
	grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$out" || return 1
	out="$("$ASSETS/kubectl" version --client 2>/dev/null)" || return 1
	grep -qx "Client Version: $K8S_VERSION" <<<"$out" || return 1
}

if up_to_date; then
	log "up to date ($K8S_VERSION, etcd $ETCD_VERSION)"
	echo "$ASSETS"
	exit 0
fi

mkdir -p "$ENVTEST_ROOT"
command -v flock >/dev/null 2>&1 || die "flock is not on PATH (util-linux)"
exec 9>"$ENVTEST_ROOT/.lock-k8s-$K8S_VERSION"
if ! flock -n 9; then
	log "another run is building $ASSETS; waiting for its lock"
	flock 9
fi
# The run that held the lock may have built everything meanwhile.
if up_to_date; then
	log "up to date ($K8S_VERSION, etcd $ETCD_VERSION)"
	echo "$ASSETS"
	exit 0
fi

start=$SECONDS
work="$(mktemp -d "$ENVTEST_ROOT/.build-k8s-$K8S_VERSION.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out"

k8s_module_prepare "$work/k8s" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
ldflags="$(k8s_ldflags)"

log "building kube-apiserver and kubectl $K8S_VERSION (CGO_ENABLED=0; ~5-7 minutes cold on 2 cores)"
t=$SECONDS
(cd "$work/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$work/out/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2
log "kube-apiserver and kubectl built in $((SECONDS - t))s"

# --- throw-away module for etcd -----------------------------------------------
log "building etcd $ETCD_VERSION (go.etcd.io/etcd/server/v3)"
t=$SECONDS
build_go_command go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$work/out/etcd"
log "etcd built in $((SECONDS - t))s"

# --- install (rename within one file system, so readers never see half a file)
mkdir -p "$ASSETS"
for b in kube-apiserver kubectl etcd; do
	mv -f "$work/out/$b" "$ASSETS/$b"
done
up_to_date || die "built binaries in $ASSETS do not report $K8S_VERSION / etcd $ETCD_VERSION"
log "$("$ASSETS/kube-apiserver" --version), etcd ${ETCD_VERSION#v}, kubectl $K8S_VERSION"
log "done in $((SECONDS - start))s"
echo "$ASSETS"
