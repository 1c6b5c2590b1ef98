#!/usr/bin/env bash
# Build a FROM-scratch image of one of the project's binaries.
#   hack/build-image.sh chatd ringchat/chatd:dev [version]
#   hack/build-image.sh ringchat-operator ringchat/ringchat-operator:dev [version]
#   hack/build-image.sh chatctl ringchat/chatctl:dev [version]
# The binary is built static (CGO_ENABLED=0) and stamped with the version.
set -euo pipefail
bin="$1"
tag="$2"
version="${3:-dev}"
root="$(cd "$(dirname "$0")/.." && pwd)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
case "$bin" in
chatd) pkg=./chatd/cmd/chatd ;;
ringchat-operator) pkg=./controllers/cmd/ringchat-operator ;;
chatctl) pkg=./chatd/cmd/chatctl ;;
*) echo "build-image: unknown binary $bin" >&2; exit 2 ;;
esac
(cd "$root" && CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X github.com/ringchat/ringchat/chatd/version.Version=${version}" \
	-o "$ctx/$bin" "$pkg")
ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -f "$ca" ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null
fi
cp "$ca" "$ctx/ca-certificates.crt"
# (The legacy builder's deprecation notice on stderr is noise: Debian's
# docker.io has no buildx, and nothing here needs it.)
docker build -q -f "$root/hack/images/$bin.Dockerfile" --build-arg VERSION="$version" -t "$tag" "$ctx" >/dev/null 2>"$ctx.log" ||
	{ cat "$ctx.log" >&2; rm -f "$ctx.log"; exit 1; }
rm -f "$ctx.log"
echo "$tag"
