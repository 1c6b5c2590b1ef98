# shellcheck shell=bash
# Helpers for building Kubernetes commands from k8s.io/kubernetes source
# through the Go module proxy. Sourced by hack/envtest-assets.sh and
# hack/k8s-node-binaries.sh; the caller defines log() and die() and sets
# K8S_VERSION (v1.<minor>.<patch>).
#
# k8s.io/kubernetes is not meant to be used as a module: its go.mod replaces
# every staging module (k8s.io/api, k8s.io/apiserver, ...) with a directory of
# its own tree. A build therefore happens in a throw-away module (never the
# project's go.mod) that requires k8s.io/kubernetes and replaces each of those
# staging modules with its published v0.<minor>.<patch> release. The list of
# staging modules is read from k8s.io/kubernetes's own go.mod in the module
# cache, so nothing here has to follow it by hand.

# Every go command here runs outside the project: no workspace, module mode.
export GOWORK=off GO111MODULE=on
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"

# quiet_tidy: go mod tidy in the current folder, without its one "go:
# downloading" line per module (noise in a cold run's log) unless it fails.
quiet_tidy() {
	if ! go mod tidy 2>tidy.log; then
		cat tidy.log >&2
		die "go mod tidy failed in $PWD"
	fi
	grep -v '^go: downloading' tidy.log >&2 || true
	rm -f tidy.log
}

# k8s_module_prepare DIR PKG...: makes DIR a throw-away module that builds the
# given k8s.io/kubernetes packages, and sets K8S_BUILD_EPOCH (the release time
# of k8s.io/kubernetes on the module proxy, or SOURCE_DATE_EPOCH).
k8s_module_prepare() {
	local dir="$1"
	shift
	[[ "$K8S_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "K8S_VERSION must look like v1.<minor>.<patch>, not '$K8S_VERSION'"
	local staging_version="v0.${K8S_VERSION#v1.}"
	mkdir -p "$dir"
	log "downloading k8s.io/kubernetes@$K8S_VERSION (module proxy)"
	(cd "$dir" && go mod download "k8s.io/kubernetes@$K8S_VERSION") >&2
	local gomod k8s_time
	gomod="$(cd "$dir" && go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$K8S_VERSION")"
	k8s_time="$(cd "$dir" && go list -m -f '{{if .Time}}{{.Time.Unix}}{{end}}' "k8s.io/kubernetes@$K8S_VERSION")"
	[ -f "$gomod" ] || die "cannot find k8s.io/kubernetes@$K8S_VERSION's go.mod in the module cache"
	K8S_BUILD_EPOCH="${SOURCE_DATE_EPOCH:-${k8s_time:-$(date +%s)}}"

	# `go mod edit -print` gives go.mod in canonical form: directives either on
	# one line ("replace a => b", "godebug k=v") or in a parenthesised block.
	local canonical
	canonical="$(go mod edit -print "$gomod")"
	_directive_lines() { # $1 = directive name; prints its entries, one a line
		awk -v d="$1" '
			$0 == d " (" { inblock = 1; next }
			inblock && $0 == ")" { inblock = 0; next }
			inblock { sub(/^[ \t]+/, ""); print; next }
			index($0, d " ") == 1 { print substr($0, length(d) + 2) }
		' <<<"$canonical"
	}
	# Staging modules: replacements whose target is a directory of the tree
	# ("k8s.io/api => ./staging/src/k8s.io/api").
	local staging godebugs
	mapfile -t staging < <(_directive_lines replace | awk -F' => ' '$2 ~ /^\.\.?\// { split($1, old, " "); print old[1] }')
	mapfile -t godebugs < <(_directive_lines godebug)
	[ "${#staging[@]}" -gt 0 ] || die "found no staging replacements in $gomod"
	log "k8s.io/kubernetes@$K8S_VERSION lists ${#staging[@]} staging modules; using their published $staging_version"

	local edits=(-require="k8s.io/kubernetes@$K8S_VERSION") m g p
	for m in "${staging[@]}"; do
		edits+=(-replace="$m=$m@$staging_version")
	done
	for g in "${godebugs[@]}"; do
		edits+=(-godebug="$g")
	done
	(
		cd "$dir" || exit 1
		go mod init ringchat.invalid/k8s-build >/dev/null 2>&1 || die "go mod init failed in $dir"
		go mod edit "${edits[@]}"
		{
			printf '//go:build tools\n\n// Package tools names the commands this throw-away module builds.\npackage tools\n\nimport (\n'
			for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
			printf ')\n'
		} >tools.go
		log "resolving dependencies (go mod tidy)"
		quiet_tidy
	)
}

# k8s_ldflags: the version stamps Kubernetes' hack/lib/version.sh sets (no
# gitCommit or gitTreeState: the module proxy does not say which commit a
# release came from). kubeadm refuses to work without a real version.
k8s_ldflags() {
	[[ "$K8S_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "bad K8S_VERSION '$K8S_VERSION'"
	local minor="${BASH_REMATCH[1]}" build_date pkg out="-s -w"
	build_date="$(date -u -d "@${K8S_BUILD_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		out+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.buildDate=$build_date"
	done
	echo "$out"
}

# build_go_command MODULE VERSION PKG OUT [LDFLAGS]: builds the command PKG of
# MODULE@VERSION (CGO_ENABLED=0) into the file OUT, in a throw-away module so
# the project's go.mod never sees MODULE's dependency set.
build_go_command() {
	local module="$1" version="$2" pkg="$3" out="$4" ldflags="${5:--s -w}" dir
	dir="$(mktemp -d "${TMPDIR:-/tmp}/ringchat-gobuild.XXXXXX")"
	(
		cd "$dir"
		go mod init ringchat.invalid/gobuild >/dev/null 2>&1 || die "go mod init failed in $dir"
		go mod edit -require="$module@$version"
		printf '//go:build tools\n\n// Package tools names the command this throw-away module builds.\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
		quiet_tidy
		CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out" "$pkg" >&2
	) || { rm -rf "$dir"; die "building $pkg@$version failed"; }
	rm -rf "$dir"
}
