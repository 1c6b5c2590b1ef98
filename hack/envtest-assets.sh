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
# How: k8s.io/kubernetes is not meant to be used as a module: its go.mod
# replaces every staging module (k8s.io/api, k8s.io/apiserver, ...) with a
# directory of its own tree. The build therefore happens in a throw-away
# module (never the project's go.mod) that requires k8s.io/kubernetes and
# replaces each of those staging modules with its published v0.<minor>.<patch>
# release. The list of staging modules is read from k8s.io/kubernetes's own
# go.mod in the module cache, so nothing here has to follow it by hand.
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

if ! [[ "$K8S_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
	die "K8S_VERSION must look like v1.<minor>.<patch>, not '$K8S_VERSION'"
fi
K8S_MAJOR=1
K8S_MINOR="${BASH_REMATCH[1]}"
# The staging modules are published as v0.<minor>.<patch> for v1.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

command -v go >/dev/null 2>&1 || die "go is not on PATH"

# Every go command here runs outside the project: no workspace, module mode.
export GOWORK=off GO111MODULE=on
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"

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
mkdir -p "$work/k8s" "$work/etcd" "$work/out"

# --- read k8s.io/kubernetes's go.mod from the module cache -------------------
log "downloading k8s.io/kubernetes@$K8S_VERSION (module proxy)"
(cd "$work" && go mod download "k8s.io/kubernetes@$K8S_VERSION") >&2
k8s_gomod="$(cd "$work" && go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$K8S_VERSION")"
k8s_time="$(cd "$work" && go list -m -f '{{if .Time}}{{.Time.Unix}}{{end}}' "k8s.io/kubernetes@$K8S_VERSION")"
[ -f "$k8s_gomod" ] || die "cannot find k8s.io/kubernetes@$K8S_VERSION's go.mod in the module cache"

# `go mod edit -print` gives go.mod in canonical form: directives either on one
# line ("replace a => b", "godebug k=v") or in a parenthesised block.
canonical="$(go mod edit -print "$k8s_gomod")"
directive_lines() { # $1 = directive name; prints the directive's entries, one a line
	awk -v d="$1" '
		$0 == d " (" { inblock = 1; next }
		inblock && $0 == ")" { inblock = 0; next }
		inblock { sub(/^[ \t]+/, ""); print; next }
		index($0, d " ") == 1 { print substr($0, length(d) + 2) }
	' <<<"$canonical"
}
# Staging modules: replacements whose target is a directory of the kubernetes
# tree ("k8s.io/api => ./staging/src/k8s.io/api").
mapfile -t staging < <(directive_lines replace | awk -F' => ' '$2 ~ /^\.\.?\// { split($1, old, " "); print old[1] }')
mapfile -t godebugs < <(directive_lines godebug)
[ "${#staging[@]}" -gt 0 ] || die "found no staging replacements in $k8s_gomod"
log "k8s.io/kubernetes@$K8S_VERSION lists ${#staging[@]} staging modules; using their published $STAGING_VERSION"

# --- throw-away module for kube-apiserver and kubectl ------------------------
edits=(-require="k8s.io/kubernetes@$K8S_VERSION")
for m in "${staging[@]}"; do
	edits+=(-replace="$m=$m@$STAGING_VERSION")
done
for g in "${godebugs[@]}"; do
	edits+=(-godebug="$g")
done
(
	cd "$work/k8s"
	go mod init ringchat.invalid/envtest-assets/k8s >/dev/null 2>&1 || die "go mod init failed in $work/k8s"
	go mod edit "${edits[@]}"
	cat >tools.go <<'EOF'
//go:build tools

// Package tools names the commands this throw-away module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
	log "resolving dependencies (go mod tidy)"
	go mod tidy >&2
)

# Version stamps, as Kubernetes' hack/lib/version.sh sets them (no gitCommit or
# gitTreeState: the module proxy does not say which commit a release came from).
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	build_epoch="$SOURCE_DATE_EPOCH"
elif [ -n "$k8s_time" ]; then
	build_epoch="$k8s_time"
else
	build_epoch="$(date +%s)"
fi
build_date="$(date -u -d "@$build_epoch" +%Y-%m-%dT%H:%M:%SZ)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$K8S_VERSION"
	ldflags+=" -X $pkg.gitMajor=$K8S_MAJOR"
	ldflags+=" -X $pkg.gitMinor=$K8S_MINOR"
	ldflags+=" -X $pkg.buildDate=$build_date"
done

log "building kube-apiserver and kubectl $K8S_VERSION (CGO_ENABLED=0; ~5-7 minutes cold on 2 cores)"
t=$SECONDS
(cd "$work/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$work/out/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2
log "kube-apiserver and kubectl built in $((SECONDS - t))s"

# --- throw-away module for etcd -----------------------------------------------
log "building etcd $ETCD_VERSION (go.etcd.io/etcd/server/v3)"
t=$SECONDS
(
	cd "$work/etcd"
	go mod init ringchat.invalid/envtest-assets/etcd >/dev/null 2>&1 || die "go mod init failed in $work/etcd"
	go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
	cat >tools.go <<'EOF'
//go:build tools

// Package tools names the command this throw-away module builds.
package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
	go mod tidy >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/out/etcd" go.etcd.io/etcd/server/v3 >&2
)
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
