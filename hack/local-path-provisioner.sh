#!/usr/bin/env bash
# Builds, offline, the images of the kind e2e cluster's dynamic volume
# provisioner: Rancher's local-path-provisioner, which gives each
# PersistentVolumeClaim a directory on the node its pod runs on. Prints two
# lines on stdout, the provisioner image and its helper image; progress goes
# to stderr. Nothing is pulled, and none of their code enters this
# repository:
#
#  - the provisioner binary is built from github.com/rancher/local-path-provisioner
#    at $LPP_VERSION through the Go module proxy, in a throw-away module
#    (hack/lib/k8s-module.sh's build_go_command), cached by version, and put
#    in a FROM-scratch image that runs it as a non-root user;
#  - the helper image is what the provisioner runs, as a short-lived pod on
#    the volume's node, to create and delete the directory (`/bin/sh
#    /script/setup` or `teardown`, two-line scripts that call mkdir and rm,
#    from its ConfigMap): Debian's busybox-static binary, with sh, mkdir and
#    rm linked to it, FROM scratch.
#
# The manifests (ConfigMap with the scripts, RBAC, Deployment, the default
# StorageClass) are e2e/testdata/local-path-provisioner.yaml; hack/e2e.sh
# loads the images into the nodes with `kind load docker-image`, so the node
# image does not change.
#
# Knobs: LPP_VERSION (v0.0.30), RINGCHAT_CACHE.
set -euo pipefail

LPP_VERSION="${LPP_VERSION:-v0.0.30}"
CACHE="${RINGCHAT_CACHE:-$HOME/.cache/ringchat}"
HACK="$(cd "$(dirname "$0")" && pwd)"

log() { echo "local-path-provisioner: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=hack/lib/k8s-module.sh
. "$HACK/lib/k8s-module.sh"

# The tags change with this script, so an edit rebuilds and a warm run reuses.
recipe="$(sha256sum "$0" | cut -c1-12)"
PROVISIONER_IMAGE="ringchat.local/local-path-provisioner:$LPP_VERSION-$recipe"
HELPER_IMAGE="ringchat.local/local-path-helper:busybox-$recipe"

have() { docker image inspect "$1" >/dev/null 2>&1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/ringchat-lpp.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# scratch_image REF CONTEXT DOCKERFILE_BODY
scratch_image() {
	printf 'FROM scratch\n%s\n' "$3" >"$2/Dockerfile"
	echo Dockerfile >"$2/.dockerignore"
	docker build -q -t "$1" "$2" >/dev/null 2>"$2.log" || { cat "$2.log" >&2; die "docker build of $1 failed"; }
}

if ! have "$PROVISIONER_IMAGE"; then
	bin_dir="$CACHE/kind/local-path-provisioner-$LPP_VERSION"
	if [ ! -x "$bin_dir/local-path-provisioner" ]; then
		log "building github.com/rancher/local-path-provisioner@$LPP_VERSION (Go module proxy)"
		mkdir -p "$bin_dir"
		build_go_command github.com/rancher/local-path-provisioner "$LPP_VERSION" \
			github.com/rancher/local-path-provisioner "$bin_dir/local-path-provisioner.tmp"
		mv -f "$bin_dir/local-path-provisioner.tmp" "$bin_dir/local-path-provisioner"
	fi
	mkdir -p "$work/provisioner/usr/bin"
	cp "$bin_dir/local-path-provisioner" "$work/provisioner/usr/bin/"
	scratch_image "$PROVISIONER_IMAGE" "$work/provisioner" \
		'COPY . /
USER 65532:65532
ENTRYPOINT ["/usr/bin/local-path-provisioner"]'
	log "built $PROVISIONER_IMAGE"
fi

if ! have "$HELPER_IMAGE"; then
	mkdir -p "$work/deb" "$work/helper/bin"
	# apt-get download needs the package lists; fetch them once if absent.
	if ! (cd "$work/deb" && apt-get download busybox-static >/dev/null 2>&1); then
		log "apt-get update (for busybox-static)"
		apt-get update -qq
		(cd "$work/deb" && apt-get download busybox-static >/dev/null) || die "apt-get download busybox-static failed"
	fi
	dpkg-deb -x "$work"/deb/busybox-static_*.deb "$work/deb/root"
	# (The package has another file named busybox, an initramfs hook.)
	bb="$work/deb/root/bin/busybox"
	[ -f "$bb" ] || bb="$work/deb/root/usr/bin/busybox"
	[ -f "$bb" ] || die "no bin/busybox in Debian's busybox-static package"
	install -m 0755 "$bb" "$work/helper/bin/busybox"
	for applet in sh mkdir rm; do
		ln -s busybox "$work/helper/bin/$applet"
	done
	scratch_image "$HELPER_IMAGE" "$work/helper" \
		'COPY . /
ENV PATH=/bin
ENTRYPOINT ["/bin/sh"]'
	log "built $HELPER_IMAGE"
fi

# Images of earlier recipes are dead weight: keep only the current ones.
for repo in ringchat.local/local-path-provisioner ringchat.local/local-path-helper; do
	docker images --format '{{.Repository}}:{{.Tag}}' "$repo" | while read -r old; do
		[ "$old" = "$PROVISIONER_IMAGE" ] || [ "$old" = "$HELPER_IMAGE" ] || docker rmi "$old" >/dev/null 2>&1 || true
	done
done

echo "$PROVISIONER_IMAGE"
echo "$HELPER_IMAGE"
