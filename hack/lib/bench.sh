# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # $root and $out come from the caller; $chatd, $chatbench and $cmdlog are set for it
# What the benchmark scripts (hack/bench-durable.sh, hack/bench-shapes.sh)
# share: their log, the tools they need, the build of bin/chatd and
# bin/chatbench, and the header of commands.log. The caller sets $root (the
# repository) and $out (the reports' directory) before bench_init.

# bench_init: create $out and $cmdlog (every command run goes there).
bench_init() {
	mkdir -p "$out"
	cmdlog="$out/commands.log"
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$cmdlog" >&2; }
die() {
	log "error: $*"
	exit 1
}

# bench_build: check the tools, build bin/chatd and bin/chatbench (setting
# $chatd and $chatbench), and write what was measured on what to
# commands.log; extra header lines come as arguments.
bench_build() {
	command -v taskset >/dev/null || die "taskset is needed (util-linux)"
	command -v curl >/dev/null || die "curl is needed"
	[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs; server and chatbench will share one"
	log "building bin/chatd and bin/chatbench"
	make -s -C "$root" build
	(cd "$root" && CGO_ENABLED=0 go build -o bin/chatbench ./chatd/cmd/chatbench)
	chatd="$root/bin/chatd"
	chatbench="$root/bin/chatbench"
	{
		echo "# $(date -Is) commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+dirty') $*"
		echo "# $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
	} >>"$cmdlog"
}
