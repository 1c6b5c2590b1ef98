#!/usr/bin/env bash
# Build a FROM-scratch image of one of the project's binaries.
#   hack/build-image.sh chatd ringchat/chatd:dev [version]
#   hack/build-image.sh ringchat-operator ringchat/ringchat-operator:dev [version]
#   hack/build-image.sh chatctl ringchat/chatctl:dev [version]
# The binary is built by the Makefile's target for it (make build,
# build-operator, build-chatctl: static, version-stamped), with BIN pointing
# at the build context, so how a binary is built and stamped is defined once,
# in the Makefile. The image is labelled with the version, the git commit
# (org.opencontainers.image.revision) and the build time
# (org.opencontainers.image.created; SOURCE_DATE_EPOCH when set). Prints the
# tag on stdout, everything else on stderr.
# hack/images/images_test.go checks the Dockerfiles and this script.
set -euo pipefail
bin="$1"
tag="$2"
version="${3:-dev}"
root="$(cd "$(dirname "$0")/.." && pwd)"
case "$bin" in
chatd) target=build ;;
ringchat-operator) target=build-operator ;;
chatctl) target=build-chatctl ;;
*) echo "build-image: unknown binary $bin" >&2; exit 2 ;;
esac
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx" "$ctx.log"' EXIT
make --no-print-directory -s -C "$root" "$target" BIN="$ctx" VERSION="$version" >&2
[ -x "$ctx/$bin" ] || { echo "build-image: make $target did not produce $bin" >&2; exit 1; }
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
else
	created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fi
ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -f "$ca" ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null
fi
cp "$ca" "$ctx/ca-certificates.crt"
# (The legacy builder's deprecation notice on stderr is noise: Debian's
# docker.io has no buildx, and nothing here needs it.)
docker build -q -f "$root/hack/images/$bin.Dockerfile" \
	--build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
	-t "$tag" "$ctx" >/dev/null 2>"$ctx.log" ||
	{ cat "$ctx.log" >&2; exit 1; }
echo "$tag"
