#!/usr/bin/env bash
# bench/record.sh — what recording a command (holoproxy trace -- COMMAND) costs it: `go mod
# download all` of the 300-module workload from nginx on 127.0.0.1, plain and recorded,
# alternated in each round, fresh client caches. Prints each round's plain wall time, the
# recorded run's whole time (holoproxy trace with its reports) and the command's wall time
# as the trace measured it. Needs go, nginx (apt-get install nginx-light), python3.
#
#   ROUNDS=7 bash bench/record.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300}
ROUNDS=${ROUNDS:-7}
. bench/lib.sh
bench_init holorec
bench_workload
start_nginx "$TREE"
go_download "$NGINX" >/dev/null
rec() {
	chmod -R u+w "$SHM/mod" 2>/dev/null || true
	rm -rf "$SHM/mod" "$W/gocache"
	mkdir -p "$SHM/mod"
	local t0 t1
	t0=$(date +%s.%N)
	(cd "$APP" && GOMODCACHE=$SHM/mod GOCACHE=$W/gocache GOSUMDB=off GOFLAGS=-mod=mod \
		GOTOOLCHAIN=local GOWORK=off GONOSUMDB= GOPRIVATE= GONOPROXY= "$W/holoproxy" trace --proxy "$NGINX" --gomodcache "$SHM/mod" --json "$W/rec.json" -- go mod download all >"$W/rec.out" 2>"$W/rec.err") || { cat "$W/rec.err" >&2; exit 1; }
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
for r in $(seq $ROUNDS); do
	if [ $((r % 2)) = 1 ]; then a=$(go_download "$NGINX"); b=$(rec); else b=$(rec); a=$(go_download "$NGINX"); fi
	w=$(python3 -c "import json;print(json.load(open('$W/rec.json'))['runs'][0]['wall_ns']/1e9)")
	echo "round $r plain $a recorded-total $b recorded-command-wall $w"
done
echo "the last recorded run's report:"
head -12 "$W/rec.out"
