#!/usr/bin/env bash
# Fails when git tracks a compiled binary or an outsized file: both are
# build output that belongs in bin/ (or nowhere), never in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

max_bytes=$((1024 * 1024)) # the largest source file (the generated CRD) is ~130 KB
bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue # deleted in the work tree
	if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then
		echo "tracked file $f is an ELF binary: git rm --cached it (build output goes to bin/)" >&2
		bad=1
	fi
	size=$(stat -c %s "$f")
	if [ "$size" -gt "$max_bytes" ]; then
		echo "tracked file $f is $size bytes (over $max_bytes): is it build output?" >&2
		bad=1
	fi
done < <(git ls-files -z)
exit "$bad"
