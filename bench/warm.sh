#!/usr/bin/env bash
# bench/warm.sh — `holoproxy warm --to` against `go mod download all`, one upstream, one run.
#
#   bash bench/warm.sh                 # 300-module generated workload (bench/mktree), 3 rounds
#   ROUNDS=5 N=300 JOBS=32 bash bench/warm.sh
#
# Both fetch the same app's modules from the same static server (nginx on 127.0.0.1 over the
# tree bench/mktree writes) with nothing cached: the go command with a fresh GOMODCACHE,
# warm into a fresh GOPROXY tree. Both destinations sit on a tmpfs (/dev/shm) when there is
# one (the script says which). Rounds alternate between the two; the medians and their
# ratio are printed. Needs go and nginx; talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in go nginx curl bc; do
	command -v "$tool" >/dev/null || { echo "bench/warm.sh: needs $tool" >&2; exit 2; }
done
ROUNDS=${ROUNDS:-3}
N=${N:-300}
JOBS=${JOBS:-32}
. bench/lib.sh
bench_init holowarm
bench_workload >/dev/null
start_nginx "$TREE"
ORIGIN=$NGINX

warmcmd() { # wall seconds of holoproxy warm --to a fresh tree
	rm -rf "$SHM/tree"
	local t0 t1
	t0=$(date +%s.%N)
	"$W/holoproxy" warm --proxy "$ORIGIN" --to "$SHM/tree" -j "$JOBS" --progress off "$APP" 2>"$W/warm.log"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

files=$(find "$TREE" -name '*.zip' | wc -l)
echo "workload: $(grep -c . "$APP/go.sum") go.sum lines, $files zips, tree $(du -sh "$TREE" | cut -f1); destinations on $FS; $(nproc) cores; $(go version | cut -d' ' -f3); rounds $ROUNDS; warm -j $JOBS"
g=() w=()
for r in $(seq "$ROUNDS"); do
	g+=("$(go_download "$ORIGIN")")
	w+=("$(warmcmd)")
	printf 'round %d: go mod download all %.2fs, holoproxy warm %.2fs\n' "$r" "${g[-1]}" "${w[-1]}"
done
# The last warm run's summary (figures of the observed transport).
cat "$W/warm.log"
# The tree warm wrote builds the app offline.
(cd "$APP" && GOPROXY="file://$SHM/tree" GOMODCACHE="$SHM/mod2" GOCACHE="$W/gocache" GOSUMDB=off GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off go mod download all) && echo "check: go mod download all from the warmed tree with GOPROXY=file:// succeeded"
chmod -R u+w "$SHM/mod2" 2>/dev/null || true
gm=$(printf '%s\n' "${g[@]}" | median)
wm=$(printf '%s\n' "${w[@]}" | median)
printf '| `go mod download all`, fresh GOMODCACHE (s) | %.2f |\n| `holoproxy warm --to`, fresh tree (s) | %.2f |\n| ratio warm / go | %.3f |\n' "$gm" "$wm" "$(ratio "$wm" "$gm")"
