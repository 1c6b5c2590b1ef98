#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's
# docker.io when dockerd is missing, and start dockerd when it is not
# running. Idempotent; used by the partition tests, the image targets and
# the kind e2e suite.
#
# Where the host's capability bounding set lacks CAP_SYS_RESOURCE (as in the
# Firecracker VMs this project is tested on), privileged containers (kind's
# nodes) cannot start with plain runc; the engine is then configured with
# hack/runc-drop-sys-resource.sh as its default runtime. Elsewhere (a laptop,
# a GitHub runner) nothing about the engine is changed.
set -euo pipefail

WRAPPER_SRC="$(cd "$(dirname "$0")" && pwd)/runc-drop-sys-resource.sh"
WRAPPER=/usr/local/libexec/ringchat/runc-drop-sys-resource
RUNTIME_NAME=ringchat-runc

# host_lacks_sys_resource: CAP_SYS_RESOURCE is capability 24.
host_lacks_sys_resource() {
	local bnd
	bnd="$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)"
	[ -n "$bnd" ] && (( ((16#$bnd >> 24) & 1) == 0 ))
}

needs_wrapper=false
if host_lacks_sys_resource; then
	needs_wrapper=true
fi

engine_ok() {
	docker info >/dev/null 2>&1 || return 1
	if $needs_wrapper; then
		[ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" = "$RUNTIME_NAME" ] || return 1
		cmp -s "$WRAPPER_SRC" "$WRAPPER" || return 1
	fi
}

if engine_ok; then
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi

if ! command -v dockerd >/dev/null 2>&1; then
	echo "ensure-docker: installing Debian's docker.io"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null
fi

if $needs_wrapper; then
	if ! command -v jq >/dev/null 2>&1; then
		echo "ensure-docker: installing jq (the runtime wrapper edits OCI specs with it)"
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends jq >/dev/null
	fi
	echo "ensure-docker: this host lacks CAP_SYS_RESOURCE; registering $WRAPPER as dockerd's default runtime"
	$SUDO install -D -m 0755 "$WRAPPER_SRC" "$WRAPPER"
	daemon_json=/etc/docker/daemon.json
	current='{}'
	if [ -s "$daemon_json" ]; then
		current="$($SUDO cat "$daemon_json")"
	fi
	$SUDO mkdir -p /etc/docker
	jq --arg name "$RUNTIME_NAME" --arg path "$WRAPPER" \
		'.runtimes[$name] = {path: $path} | ."default-runtime" = $name' <<<"$current" |
		$SUDO tee "$daemon_json.new" >/dev/null
	$SUDO mv -f "$daemon_json.new" "$daemon_json"
	# A running engine reads daemon.json only at start.
	if pgrep -x dockerd >/dev/null 2>&1 && [ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" != "$RUNTIME_NAME" ]; then
		echo "ensure-docker: restarting dockerd to pick up the runtime"
		$SUDO pkill -x dockerd || true
		for _ in $(seq 1 30); do
			pgrep -x dockerd >/dev/null 2>&1 || break
			sleep 1
		done
	fi
fi

# The docker CLI found first on PATH may be a different build than the
# engine's; that is fine, the API is versioned.
if ! pgrep -x dockerd >/dev/null 2>&1; then
	echo "ensure-docker: starting dockerd (log: /tmp/ringchat-dockerd.log)"
	$SUDO sh -c 'nohup dockerd >/tmp/ringchat-dockerd.log 2>&1 &'
fi

for _ in $(seq 1 60); do
	if engine_ok; then
		echo "ensure-docker: engine ready"
		exit 0
	fi
	sleep 1
done
echo "ensure-docker: dockerd did not come up; see /tmp/ringchat-dockerd.log" >&2
tail -20 /tmp/ringchat-dockerd.log >&2 || true
exit 1
