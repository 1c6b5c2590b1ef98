#!/usr/bin/env bash
# Installs pinned developer tools from the Go module proxy into a cache folder
# outside the repository:
#
#   ${RINGCHAT_CACHE:-$HOME/.cache/ringchat}/bin/
#
#   hack/tools.sh                     # controller-gen only
#   hack/tools.sh controller-gen helm # several
#   hack/tools.sh all                 # controller-gen, helm, kind, staticcheck
#
# Prints the path of each requested binary on stdout, one a line, in the order
# asked; progress goes to stderr. Idempotent: a tool already there that reports
# the pinned version is left alone; a missing one or one of another version is
# (re)installed with `GOBIN=... go install <package>@<version>`. A lock (flock)
# keeps concurrent runs apart.
#
# Pins (override in the environment, e.g. from the Makefile):
#   CONTROLLER_GEN_VERSION  sigs.k8s.io/controller-tools/cmd/controller-gen (v0.23.0)
#   HELM_VERSION            helm.sh/helm/v3/cmd/helm                        (v3.22.0)
#   KIND_VERSION            sigs.k8s.io/kind                                (v0.33.0)
#   STATICCHECK_VERSION     honnef.co/go/tools/cmd/staticcheck              (v0.8.2)
set -euo pipefail

CONTROLLER_GEN_VERSION="${CONTROLLER_GEN_VERSION:-v0.23.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.8.2}"
CACHE="${RINGCHAT_CACHE:-$HOME/.cache/ringchat}"
BIN="$CACHE/bin"

log() { echo "tools: $*" >&2; }
die() { log "$*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH"
# `go install pkg@version` builds outside any module; keep a workspace or a
# -mod flag of the caller's out of it.
export GOWORK=off GO111MODULE=on
# (Unquoted on purpose: GOFLAGS is a space-separated list, split into lines.)
# shellcheck disable=SC2086
GOFLAGS="$(printf '%s\n' ${GOFLAGS:-} | grep -v '^-mod=' | tr '\n' ' ' || true)"
export GOFLAGS

# pinned TOOL: prints "<package> <version>".
pinned() {
	case "$1" in
	controller-gen) echo "sigs.k8s.io/controller-tools/cmd/controller-gen $CONTROLLER_GEN_VERSION" ;;
	helm) echo "helm.sh/helm/v3/cmd/helm $HELM_VERSION" ;;
	kind) echo "sigs.k8s.io/kind $KIND_VERSION" ;;
	staticcheck) echo "honnef.co/go/tools/cmd/staticcheck $STATICCHECK_VERSION" ;;
	*) return 1 ;;
	esac
}

# reported TOOL: prints the version the installed binary reports (empty if none).
reported() {
	local b="$BIN/$1"
	[ -x "$b" ] || return 0
	case "$1" in
	controller-gen) "$b" --version 2>/dev/null | sed -n "s/^Version: //p" || true ;;   # "Version: v0.23.0"
	helm) "$b" version --template "{{.Version}}" 2>/dev/null || true ;;           # "v3.22.0"
	kind) "$b" version 2>/dev/null | awk '$1 == "kind" { print $2 }' || true ;; # "kind v0.33.0 go1.26.8 linux/amd64"
	staticcheck) "$b" -version 2>/dev/null | sed -n 's/^staticcheck [^ ]* (v\{0,1\}\([^)]*\))$/v\1/p' || true ;; # "staticcheck 2026.2.2 (0.8.2)"
	esac
}

# ldflags TOOL VERSION: version stamps a tool's own release build sets and
# `go install` alone would not. helm's Makefile sets its version (without it
# `helm version` says only "v3.<minor>") and the Kubernetes version that
# `helm template`/`helm lint` assume (.Capabilities.KubeVersion; the source
# default is v1.20), derived from the k8s.io/client-go its go.mod requires.
ldflags() {
	case "$1" in
	helm)
		local gomod cg minor flags
		flags="-s -w -X helm.sh/helm/v3/internal/version.version=$2"
		gomod="$(cd "${TMPDIR:-/tmp}" && go list -m -f '{{.GoMod}}' "helm.sh/helm/v3@$2")"
		cg="$(go mod edit -print "$gomod" | awk '{ sub(/^[ \t]+/, "") } $1 == "require" { $1 = ""; sub(/^ /, "") } $1 == "k8s.io/client-go" { print $2; exit }')"
		if [[ "$cg" =~ ^v0\.([0-9]+)\. ]]; then
			minor="${BASH_REMATCH[1]}"
			for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
				flags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
			done
		else
			log "helm: cannot tell which k8s.io/client-go helm $2 uses; leaving its default Kubernetes version"
		fi
		echo "$flags"
		;;
	*) echo "-s -w" ;;
	esac
}

tools=("$@")
[ "${#tools[@]}" -gt 0 ] || tools=(controller-gen)
if [ "${tools[0]}" = all ] && [ "${#tools[@]}" -eq 1 ]; then
	tools=(controller-gen helm kind staticcheck)
fi
for t in "${tools[@]}"; do
	pinned "$t" >/dev/null || die "unknown tool '$t' (known: controller-gen helm kind staticcheck all)"
done

mkdir -p "$BIN"
exec 9>"$BIN/.tools.lock"
if ! flock -n 9; then
	log "another run holds $BIN/.tools.lock; waiting"
	flock 9
fi

for t in "${tools[@]}"; do
	read -r pkg want < <(pinned "$t")
	have="$(reported "$t")"
	if [ "$have" = "$want" ]; then
		log "$t $want is installed"
	else
		if [ -n "$have" ]; then
			log "$t reports '$have', want $want; reinstalling"
		fi
		log "installing $t: go install $pkg@$want"
		s=$SECONDS
		# Install next to bin/ and rename into place: a running copy is never
		# half-written, and whatever was at the path (even a non-Go file, which
		# `go install` refuses to overwrite) is replaced.
		stage="$(mktemp -d "$BIN/.install-$t.XXXXXX")"
		if ! GOBIN="$stage" CGO_ENABLED=0 go install -trimpath -ldflags "$(ldflags "$t" "$want")" "$pkg@$want" >&2; then
			rm -rf "$stage"
			die "go install $pkg@$want failed"
		fi
		mv -f "$stage/$(basename "$pkg")" "$BIN/$t"
		rm -rf "$stage"
		have="$(reported "$t")"
		[ "$have" = "$want" ] || die "$t installed, but it reports '$have' instead of $want"
		log "$t $want installed in $((SECONDS - s))s"
	fi
done
for t in "${tools[@]}"; do
	echo "$BIN/$t"
done
