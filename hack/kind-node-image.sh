#!/usr/bin/env bash
# Prints a kind node image for Kubernetes $K8S_VERSION that exists in the local
# Docker engine, building it offline when it is missing. The LAST line of
# stdout is the image reference; progress goes to stderr.
#
#   KIND_NODE_IMAGE=kindest/node:v1.37.2 hack/kind-node-image.sh  # use (or pull) that, build nothing
#   hack/kind-node-image.sh                                       # ringchat.local/kind-node:v1.37.2-<hash>
#
# Nothing here pulls an image: every piece comes from Debian packages or the Go
# module proxy, and every stage is cached (binaries by version, the root file
# system by its package list, the images by tag), so a warm run does nothing.
#
#  1. A Debian 12 root file system (debootstrap) with systemd, containerd, runc,
#     the CNI plugins and jq (kind's container hook calls jq).
#  2. Kubernetes binaries from k8s.io/kubernetes source (hack/k8s-node-binaries.sh).
#  3. The control-plane images kubeadm asks for, tagged exactly as
#     `kubeadm config images list` prints them, each FROM scratch with a binary
#     built from source: kube-apiserver, kube-controller-manager,
#     kube-scheduler, etcd (go.etcd.io/etcd), coredns (github.com/coredns),
#     pause (a static C program), and kube-proxy (FROM a slim folder holding
#     iptables and conntrack with their libraries, taken from the root file
#     system).
#  4. kind's base-image files (entrypoint, systemd units, containerd config),
#     read at build time from sigs.k8s.io/kind in the Go module cache — never
#     copied into this repository — laid out as kind's base Dockerfile does,
#     with the edits this kind of host needs (see docs/testing.md):
#     restrict_oom_score_adj (negative OOM scores are refused without
#     CAP_SYS_RESOURCE), the pause tag, no fuse-overlayfs proxy plugin.
#  5. The images are imported into the node's containerd, and the result is
#     committed as the node image.
#
# Knobs: K8S_VERSION (v1.37.2), KIND_VERSION (v0.33.0), DEBIAN_SUITE (bookworm),
# DEBIAN_MIRROR (http://deb.debian.org/debian), RINGCHAT_CACHE, KIND_NODE_IMAGE.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${RINGCHAT_CACHE:-$HOME/.cache/ringchat}"
KIND_CACHE="$CACHE/kind"
HACK="$(cd "$(dirname "$0")" && pwd)"

log() { echo "kind-node-image: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=hack/lib/k8s-module.sh
. "$HACK/lib/k8s-module.sh"

if [ -n "${KIND_NODE_IMAGE:-}" ]; then
	if ! docker image inspect "$KIND_NODE_IMAGE" >/dev/null 2>&1; then
		log "pulling $KIND_NODE_IMAGE"
		docker pull "$KIND_NODE_IMAGE" >&2 || die "KIND_NODE_IMAGE=$KIND_NODE_IMAGE is neither in the local engine nor pullable"
	fi
	echo "$KIND_NODE_IMAGE"
	exit 0
fi

# The packages of the node's root file system (kind's base image list, minus
# what only rootless or storage tests use).
PACKAGES=(systemd systemd-sysv dbus containerd runc containernetworking-plugins conntrack
	iptables nftables iproute2 ethtool socat procps kmod mount util-linux ca-certificates
	libseccomp2 bash jq)

# The image tag changes whenever this script, its library, the versions or the
# package list change, so an edit here rebuilds and a warm run reuses.
recipe_hash="$(cat "$0" "$HACK/lib/k8s-module.sh" | { cat; echo "$K8S_VERSION $KIND_VERSION $DEBIAN_SUITE ${PACKAGES[*]}"; } | sha256sum | cut -c1-12)"
NODE_IMAGE="ringchat.local/kind-node:$K8S_VERSION-$recipe_hash"
if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
	log "up to date ($NODE_IMAGE)"
	echo "$NODE_IMAGE"
	exit 0
fi

mkdir -p "$KIND_CACHE"
exec 9>"$KIND_CACHE/.lock-node-image"
flock 9
if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
	echo "$NODE_IMAGE"
	exit 0
fi
# Build tools: debootstrap and jq, and gcc with the static C library for pause.
missing=()
for tool in debootstrap jq gcc; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ! command -v gcc >/dev/null 2>&1 || [ "$(gcc -print-file-name=libc.a)" = libc.a ]; then
	missing+=(libc6-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing ${missing[*]} (Debian)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

start=$SECONDS
work="$(mktemp -d "$KIND_CACHE/.build-node.XXXXXX")"
node_ctr=""
cleanup() {
	[ -n "$node_ctr" ] && docker rm -f "$node_ctr" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT

# --- 1. root file system (cached as a tarball keyed by suite and packages) ------
pkg_hash="$(echo "$DEBIAN_SUITE ${PACKAGES[*]}" | sha256sum | cut -c1-12)"
rootfs_tar="$KIND_CACHE/rootfs-$DEBIAN_SUITE-$pkg_hash.tar"
if [ ! -s "$rootfs_tar" ]; then
	log "debootstrap $DEBIAN_SUITE with ${#PACKAGES[@]} packages (about 2 minutes)"
	t=$SECONDS
	include="$(IFS=,; echo "${PACKAGES[*]}")"
	debootstrap --variant=minbase --include="$include" "$DEBIAN_SUITE" "$work/debootstrap" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
		{ tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
	rm -rf "$work/debootstrap"/var/cache/apt/archives/*.deb "$work/debootstrap"/var/lib/apt/lists/* \
		"$work/debootstrap"/usr/share/doc "$work/debootstrap"/usr/share/man "$work/debootstrap"/usr/share/locale
	tar -C "$work/debootstrap" --numeric-owner -cf "$rootfs_tar.tmp" .
	mv -f "$rootfs_tar.tmp" "$rootfs_tar"
	rm -rf "$work/debootstrap"
	log "root file system cached in $((SECONDS - t))s: $rootfs_tar"
fi
rootfs="$work/rootfs"
mkdir -p "$rootfs"
tar -C "$rootfs" --numeric-owner -xf "$rootfs_tar"

# --- 2. Kubernetes binaries ----------------------------------------------------
bins="$("$HACK/k8s-node-binaries.sh" | tail -n 1)"

# --- 3. control-plane images ------------------------------------------------------
mapfile -t wanted < <("$bins/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
[ "${#wanted[@]}" -ge 5 ] || die "kubeadm config images list printed ${#wanted[@]} images"
image_tag() { # image_tag NAME: the tag kubeadm wants for the image whose path ends in /NAME
	local ref
	for ref in "${wanted[@]}"; do
		case "${ref%:*}" in */"$1") echo "${ref##*:}"; return 0 ;; esac
	done
	die "kubeadm lists no image named $1 (it lists: ${wanted[*]})"
}
ETCD_TAG="$(image_tag etcd)"         # 3.7.0-0
COREDNS_TAG="$(image_tag coredns)"   # v1.14.6
PAUSE_TAG="$(image_tag pause)"       # 3.10.2
ETCD_VERSION="v${ETCD_TAG%-*}"

# scratch_image REF CONTEXT ENTRYPOINT_JSON: builds REF FROM scratch from CONTEXT.
scratch_image() {
	local ref="$1" ctx="$2" entry="$3"
	printf 'FROM scratch\nCOPY . /\nENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\nENTRYPOINT %s\n' "$entry" >"$ctx/Dockerfile"
	echo Dockerfile >"$ctx/.dockerignore"
	# (The legacy builder's deprecation notice on stderr is noise here: there is
	# no buildx on a Debian docker.io engine, and nothing needs it.)
	docker build -q -t "$ref" "$ctx" >/dev/null 2>"$ctx.log" || { cat "$ctx.log" >&2; die "docker build of $ref failed"; }
}

images_tar="$KIND_CACHE/images-$K8S_VERSION-$recipe_hash.tar"
if [ ! -s "$images_tar" ]; then
	for c in kube-apiserver kube-controller-manager kube-scheduler; do
		mkdir -p "$work/img-$c/usr/local/bin"
		cp "$bins/$c" "$work/img-$c/usr/local/bin/"
		scratch_image "registry.k8s.io/$c:$K8S_VERSION" "$work/img-$c" "[\"/usr/local/bin/$c\"]"
	done

	etcd_dir="$KIND_CACHE/etcd-$ETCD_VERSION"
	if [ ! -x "$etcd_dir/etcd" ]; then
		log "building etcd $ETCD_VERSION (go.etcd.io/etcd)"
		mkdir -p "$etcd_dir"
		build_go_command go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$etcd_dir/etcd.tmp"
		mv -f "$etcd_dir/etcd.tmp" "$etcd_dir/etcd"
	fi
	mkdir -p "$work/img-etcd/usr/local/bin" "$work/img-etcd/var/lib/etcd"
	cp "$etcd_dir/etcd" "$work/img-etcd/usr/local/bin/"
	scratch_image "registry.k8s.io/etcd:$ETCD_TAG" "$work/img-etcd" '["/usr/local/bin/etcd"]'

	coredns_dir="$KIND_CACHE/coredns-$COREDNS_TAG"
	if [ ! -x "$coredns_dir/coredns" ]; then
		log "building coredns $COREDNS_TAG (github.com/coredns/coredns)"
		mkdir -p "$coredns_dir"
		build_go_command github.com/coredns/coredns "$COREDNS_TAG" github.com/coredns/coredns "$coredns_dir/coredns.tmp"
		mv -f "$coredns_dir/coredns.tmp" "$coredns_dir/coredns"
	fi
	mkdir -p "$work/img-coredns"
	cp "$coredns_dir/coredns" "$work/img-coredns/"
	scratch_image "registry.k8s.io/coredns/coredns:$COREDNS_TAG" "$work/img-coredns" '["/coredns"]'

	# pause: sleeps until a signal asks it to stop, reaping children meanwhile
	# (it is PID 1 of every pod sandbox).
	mkdir -p "$work/img-pause"
	cat >"$work/pause.c" <<-'EOF'
	#include <signal.h>
	#include <stdlib.h>
	#include <sys/wait.h>
	#include <unistd.h>
	static void stop(int sig) { (void)sig; _exit(0); }
	static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
	int main(void) {
		struct sigaction term = {.sa_handler = stop}, chld = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
		sigaction(SIGINT, &term, NULL);
		sigaction(SIGTERM, &term, NULL);
		sigaction(SIGCHLD, &chld, NULL);
		for (;;) pause();
	}
	EOF
	gcc -Os -static -o "$work/img-pause/pause" "$work/pause.c"
	scratch_image "registry.k8s.io/pause:$PAUSE_TAG" "$work/img-pause" '["/pause"]'

	# kube-proxy (iptables mode) runs iptables-restore and conntrack: copy them,
	# their xtables extensions and every library they load from the root file
	# system, rather than shipping the whole Debian tree in the image.
	kp="$work/img-kube-proxy"
	mkdir -p "$kp/usr/local/bin" "$kp/usr/sbin" "$kp/tmp" "$kp/run" "$kp/var/run"
	cp "$bins/kube-proxy" "$kp/usr/local/bin/"
	# iptables looks for its match and target extensions in the folder it was
	# built with (/usr/lib/<multiarch>/xtables); without them every rule with
	# a match fails to parse ("match extension not found"). The extensions
	# load libraries of their own (libm for statistic), so they are part of
	# the set whose libraries are copied.
	xtables="$(cd "$rootfs" && echo usr/lib/*/xtables)"
	[ -d "$rootfs/$xtables" ] || die "no xtables extension folder in the root file system"
	mkdir -p "$kp/$(dirname "$xtables")"
	cp -a "$rootfs/$xtables" "$kp/$xtables"
	objects=(usr/sbin/xtables-nft-multi usr/sbin/xtables-legacy-multi usr/sbin/conntrack)
	for f in "${objects[@]}"; do
		cp -a "$rootfs/$f" "$kp/$f"
	done
	for f in "$rootfs/$xtables"/*.so; do
		objects+=("${f#"$rootfs"/}")
	done
	for f in "${objects[@]}"; do
		chroot "$rootfs" ldd "/$f" | awk '/=> \// { print $3 } /^\t\// { print $1 }'
	done | sort -u | while read -r lib; do
		mkdir -p "$kp/$(dirname "$lib")"
		cp -L "$rootfs$lib" "$kp$lib"
	done
	for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
		ln -sf xtables-nft-multi "$kp/usr/sbin/$tool"
		ln -sf xtables-nft-multi "$kp/usr/sbin/${tool/tables/tables-nft}"
		ln -sf xtables-legacy-multi "$kp/usr/sbin/${tool/tables/tables-legacy}"
	done
	scratch_image "registry.k8s.io/kube-proxy:$K8S_VERSION" "$kp" '["/usr/local/bin/kube-proxy"]'

	refs=()
	for ref in "${wanted[@]}"; do
		docker image inspect "$ref" >/dev/null 2>&1 || die "image $ref was not built"
		refs+=("$ref")
	done
	log "saving ${#refs[@]} images to $images_tar"
	docker save "${refs[@]}" -o "$images_tar.tmp"
	mv -f "$images_tar.tmp" "$images_tar"
fi

# --- 4. kind's base-image files and the node's configuration ------------------------
kind_dir="$(cd "$work" && GOFLAGS='' go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)"
base="$kind_dir/images/base/files"
[ -d "$base" ] || die "kind's base-image files are not at $base"
install -m 0755 "$base"/usr/local/bin/* "$rootfs/usr/local/bin/"
mkdir -p "$rootfs/kind/bin" "$rootfs/etc/containerd" "$rootfs/etc/default" "$rootfs/etc/sysctl.d" \
	"$rootfs/etc/systemd/system/kubelet.service.d" "$rootfs/etc/kubernetes/manifests" "$rootfs/opt/cni/bin" "$rootfs/etc/cni/net.d"
find "$base/kind" -maxdepth 1 -type f -exec install -m 0644 {} "$rootfs/kind/" \;
install -m 0755 "$base"/kind/bin/* "$rootfs/kind/bin/"
install -m 0644 "$base"/etc/crictl.yaml "$rootfs/etc/"
install -m 0644 "$base"/etc/containerd/* "$rootfs/etc/containerd/"
install -m 0644 "$base"/etc/default/* "$rootfs/etc/default/"
install -m 0644 "$base"/etc/sysctl.d/* "$rootfs/etc/sysctl.d/"
find "$base/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$rootfs/etc/systemd/system/" \;
install -m 0644 "$base"/etc/systemd/system/kubelet.service.d/* "$rootfs/etc/systemd/system/kubelet.service.d/"
rm -f "$rootfs/etc/systemd/system/containerd-fuse-overlayfs.service"

# kind's units expect binaries where its own build puts them.
for b in containerd ctr containerd-shim-runc-v2; do
	ln -sf "/usr/bin/$b" "$rootfs/usr/local/bin/$b"
done
mkdir -p "$rootfs/usr/local/sbin"
ln -sf /usr/sbin/runc "$rootfs/usr/local/sbin/runc"
for p in "$rootfs"/usr/lib/cni/*; do
	ln -sf "/usr/lib/cni/$(basename "$p")" "$rootfs/opt/cni/bin/$(basename "$p")"
done
install -m 0755 "$bins/kubeadm" "$bins/kubelet" "$bins/kubectl" "$rootfs/usr/bin/"
echo "$K8S_VERSION" >"$rootfs/kind/version"

# containerd: clamp OOM scores to its own (a negative one is refused on hosts
# without CAP_SYS_RESOURCE), use the pause image built above, and drop the
# fuse-overlayfs proxy plugin (not installed; it only serves rootless nodes).
cfg="$rootfs/etc/containerd/config.toml"
sed -i -e 's/^\(\s*restrict_oom_score_adj\s*=\s*\).*/\1true/' \
	-e "s#^\(\s*sandbox_image\s*=\s*\).*#\1\"registry.k8s.io/pause:$PAUSE_TAG\"#" "$cfg"
awk '/^\[proxy_plugins/ { skip = 1; next } /^\[/ { skip = 0 } !skip' "$cfg" >"$cfg.new" && mv "$cfg.new" "$cfg"
grep -q 'restrict_oom_score_adj = true' "$cfg" || die "could not set restrict_oom_score_adj in $cfg"
chroot "$rootfs" ctr oci spec |
	jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
	jq 'del(.process.rlimits)' >"$rootfs/etc/containerd/cri-base.json"

# systemd as kind's base image sets it up: only the units a node needs.
find "$rootfs/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "$rootfs"/lib/systemd/system/multi-user.target.wants/* "$rootfs"/etc/systemd/system/*.wants/* \
	"$rootfs"/lib/systemd/system/local-fs.target.wants/* "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
	"$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* "$rootfs"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$rootfs/etc/systemd/journald.conf"
systemctl --root="$rootfs" enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
systemctl --root="$rootfs" mask systemd-binfmt.service >/dev/null 2>&1
[ -e "$rootfs/sbin/init" ] || ln -s /usr/lib/systemd/systemd "$rootfs/sbin/init"

# --- 5. import the images into the node's containerd and commit --------------------
base_image="ringchat.local/kind-node-base:$K8S_VERSION-$recipe_hash"
log "importing the root file system into the engine"
tar -C "$rootfs" --numeric-owner -c . | docker import \
	--change 'ENV container=docker' \
	--change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$base_image" >/dev/null
rm -rf "$rootfs"
log "loading the control-plane images into the node's containerd"
node_ctr="$(docker run -d --privileged --entrypoint sleep "$base_image" infinity)"
# containerd runs as a child of a shell that waits for it (PID 1 here is sleep,
# which reaps no one), so stopping it leaves no zombie behind.
docker exec "$node_ctr" sh -c 'containerd >/tmp/containerd.log 2>&1 & echo $! >/tmp/containerd.pid; wait' &
containerd_exec=$!
for _ in $(seq 1 60); do
	docker exec "$node_ctr" ctr version >/dev/null 2>&1 && break
	sleep 1
done
docker exec -i "$node_ctr" ctr -n k8s.io images import --label io.cri-containerd.pinned=pinned \
	--all-platforms --no-unpack --digests - <"$images_tar" >&2
docker exec "$node_ctr" sh -c 'kill "$(cat /tmp/containerd.pid)"'
wait "$containerd_exec" || true
docker exec "$node_ctr" rm -f /tmp/containerd.log /tmp/containerd.pid
docker commit \
	--change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
	--change 'ENV container=docker' \
	"$node_ctr" "$NODE_IMAGE" >/dev/null
docker rm -f "$node_ctr" >/dev/null
node_ctr=""
docker rmi "$base_image" >/dev/null 2>&1 || true
# Earlier recipes' image archives and node images are dead weight (half a
# gigabyte each): keep only the current ones.
for old in "$KIND_CACHE"/images-*.tar; do
	[ "$old" = "$images_tar" ] || rm -f "$old"
done
docker images --format '{{.Repository}}:{{.Tag}}' ringchat.local/kind-node | while read -r old; do
	[ "$old" = "$NODE_IMAGE" ] || docker rmi "$old" >/dev/null 2>&1 || true
done
log "built $NODE_IMAGE in $((SECONDS - start))s"
echo "$NODE_IMAGE"
