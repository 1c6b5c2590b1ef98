#!/bin/sh
# An OCI runtime wrapper for dockerd on hosts whose capability bounding set
# lacks CAP_SYS_RESOURCE (some VMs): `docker run --privileged` asks runc for
# every capability, runc cannot grant one the host does not have, and the
# container fails with "unable to apply caps: operation not permitted". This
# removes CAP_SYS_RESOURCE from the container spec (<bundle>/config.json) and
# from an exec's process spec (--process FILE), then runs runc unchanged.
# hack/ensure-docker.sh installs it only where the host lacks the capability.
set -eu
RUNC="${RINGCHAT_REAL_RUNC:-/usr/sbin/runc}"
FILTER='def drop: if type == "array" then map(select(. != "CAP_SYS_RESOURCE")) else . end;
	(if .capabilities then .capabilities |= with_entries(.value |= drop) else . end)
	| (if .process.capabilities then .process.capabilities |= with_entries(.value |= drop) else . end)'

strip() { # strip FILE: rewrite FILE without CAP_SYS_RESOURCE
	[ -f "$1" ] || return 0
	tmp="$1.ringchat.$$"
	jq -c "$FILTER" "$1" >"$tmp" && mv -f "$tmp" "$1"
}

prev=""
for arg in "$@"; do
	case "$prev" in
	--bundle | -b) strip "$arg/config.json" ;;
	--process | -p) strip "$arg" ;;
	esac
	case "$arg" in
	--bundle=*) strip "${arg#--bundle=}/config.json" ;;
	--process=*) strip "${arg#--process=}" ;;
	esac
	prev="$arg"
done
exec "$RUNC" "$@"
