#!/usr/bin/env bash
# Build the chatd image of the previous release named in hack/previous-release
# from this repository's own history, by that release's own build path (its
# Makefile and hack/build-image.sh, offline like every image here).
#   hack/previous-release.sh ringchat/chatd:e2e-previous
# Prints the tag on stdout. Exits 3, saying why, when the release's commit is
# not in this clone (a shallow or history-less copy): the caller decides what
# to test instead.
set -euo pipefail
tag="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
read -r name commit < <(grep -v '^#' "$root/hack/previous-release")
if ! git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
	echo "previous-release: $name ($commit) is not in this clone's history" >&2
	exit 3
fi
src="$(mktemp -d /tmp/ringchat-previous.XXXXXX)"
trap 'rm -rf "$src"' EXIT
git -C "$root" archive "$commit" | tar -x -C "$src"
# (An archive has no git directory: the image's revision label reads
# "unknown"; its version stamp, and the tag, name the release.)
"$src/hack/build-image.sh" chatd "$tag" "$name" >/dev/null
echo "$tag"
