#!/usr/bin/env bash
# Installs Debian's chromium, which the browser tests in chatd/web drive
# (go test ./chatd/web/). Idempotent: when /usr/bin/chromium is there it does
# nothing. Needs root, or sudo.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
	echo "ensure-chromium: $CHROMIUM is installed; nothing to do"
	exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
		echo "ensure-chromium: not root; using sudo"
	else
		echo "ensure-chromium: $CHROMIUM is missing and this is neither root nor has sudo;" >&2
		echo "ensure-chromium: install Debian's chromium package as root" >&2
		exit 1
	fi
fi

echo "ensure-chromium: $CHROMIUM is missing; running apt-get update"
${SUDO[@]+"${SUDO[@]}"} apt-get update
echo "ensure-chromium: installing chromium (apt-get install --no-install-recommends chromium)"
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

if [ ! -x "$CHROMIUM" ]; then
	echo "ensure-chromium: apt-get finished, but $CHROMIUM is still missing" >&2
	exit 1
fi
echo "ensure-chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
