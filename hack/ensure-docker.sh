#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's
# docker.io when dockerd is missing, and start dockerd when it is not
# running. Idempotent; used by the partition tests and (later) the image
# and e2e targets.
set -euo pipefail

if docker info >/dev/null 2>&1; then
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

# The docker CLI found first on PATH may be a different build than the
# engine's; that is fine, the API is versioned.
if ! pgrep -x dockerd >/dev/null 2>&1; then
	echo "ensure-docker: starting dockerd (log: /tmp/ringchat-dockerd.log)"
	$SUDO sh -c 'nohup dockerd >/tmp/ringchat-dockerd.log 2>&1 &'
fi

for _ in $(seq 1 60); do
	if docker info >/dev/null 2>&1; then
		echo "ensure-docker: engine ready"
		exit 0
	fi
	sleep 1
done
echo "ensure-docker: dockerd did not come up; see /tmp/ringchat-dockerd.log" >&2
tail -20 /tmp/ringchat-dockerd.log >&2 || true
exit 1
