#!/usr/bin/env bash
# Installs what the Socket.IO tests (chatd/socketio) and the benchmark's
# Node.js comparison need: Node.js and npm (Debian's packages, when node is
# absent), the pinned socket.io-client and socket.io from
# chatd/socketio/testdata/node/package-lock.json (npm ci, into a cache
# directory keyed by the lockfile's hash, outside the repository), and
# python3-socketio with aiohttp (Debian's packages; the second client
# library). Idempotent. Prints the node_modules directory last, which the
# tests find through RINGCHAT_NODE_MODULES or this script.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
pkg="$root/chatd/socketio/testdata/node"
cache="${RINGCHAT_CACHE:-$HOME/.cache/ringchat}/node"

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
	SUDO=(sudo)
fi
apt_install() {
	echo "ensure-node: installing $* (Debian)" >&2
	${SUDO[@]+"${SUDO[@]}"} apt-get update -qq >&2
	${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
/usr/bin/python3 -c 'import socketio, aiohttp' >/dev/null 2>&1 || missing+=(python3-socketio python3-aiohttp)
if [ "${#missing[@]}" -gt 0 ]; then
	apt_install "${missing[@]}"
fi

# node's test runner and fetch, which the tests use, need Node.js 18 or
# newer (Debian 12's nodejs is 18.19).
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
	echo "ensure-node: node $(node --version) is too old: the Socket.IO tests need Node.js 18 or newer" >&2
	exit 1
fi

hash="$(sha256sum "$pkg/package-lock.json" | cut -c1-16)"
dir="$cache/$hash"
if [ ! -f "$dir/.complete" ]; then
	echo "ensure-node: npm ci of $pkg into $dir" >&2
	rm -rf "$dir"
	mkdir -p "$dir"
	cp "$pkg/package.json" "$pkg/package-lock.json" "$dir/"
	(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund >&2)
	touch "$dir/.complete"
fi
echo "ensure-node: node $(node --version), node_modules in $dir/node_modules" >&2
echo "$dir/node_modules"
