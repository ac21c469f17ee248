#!/usr/bin/env bash
# bench/checksum.sh — the cost of checksum verification in holoproxy serve: CPU seconds and
# wall time of a cold fill (`go mod download all` of the bench app through a fresh holoproxy
# cache, filling from nginx over one GOPROXY tree) with verification off and on, alternated
# in each round of one run, reported as medians and the on/off ratio.
#
#   bash bench/checksum.sh                 # 300-module generated workload, 5 rounds
#   ROUNDS=7 N=300 bash bench/checksum.sh
#   BENCH_TREE=DIR BENCH_APP=DIR bash bench/checksum.sh
#
# "on" verifies against bench/sumdb, a checksum database over the same tree on 127.0.0.1
# (its own CPU is not counted: it stands for the remote database). The go command runs with
# GOSUMDB=off so that only holoproxy verifies. Needs: go, nginx. Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in go nginx curl bc; do
	command -v "$tool" >/dev/null || { echo "bench/checksum.sh: needs $tool" >&2; exit 2; }
done
ROUNDS=${ROUNDS:-5}
N=${N:-300}
. bench/lib.sh
bench_init holosum
bench_workload
go build -o "$W/sumdb" ./bench/sumdb
start_nginx "$TREE"

# The checksum database over the tree: its first line is the GOSUMDB value "KEY URL".
"$W/sumdb" -tree "$TREE" >"$W/sumdb.out" 2>"$W/sumdb.log" &
pids+=($!)
for _ in $(seq 600); do [ -s "$W/sumdb.out" ] && break; sleep 0.05; done
SUMDB=$(head -1 "$W/sumdb.out")
[ -n "$SUMDB" ] || { echo "bench/sumdb did not start:" >&2; cat "$W/sumdb.log" >&2; exit 1; }

HOLO_PORT=$(free_port)
HOLO=http://127.0.0.1:$HOLO_PORT

# cold SUMDB: a fresh holoproxy cache and client cache; prints "wall_seconds cpu_seconds".
cold() {
	rm -rf "$W/cache" "$SHM/mod" "$W/gocache"
	"$W/holoproxy" serve --listen "127.0.0.1:$HOLO_PORT" --cache-dir "$W/cache" --upstream "$NGINX" \
		--log-level error --sumdb "$1" --gonosumdb "" --goprivate "" 2>>"$W/holoproxy.log" &
	local pid=$!
	wait_http "$HOLO/bench.test/none/@v/list" || true
	local wall cpu0 cpu1
	cpu0=$(cpu_seconds "$pid")
	wall=$(go_download "$HOLO")
	cpu1=$(cpu_seconds "$pid")
	kill "$pid"; wait "$pid" 2>/dev/null || true
	echo "$wall $(echo "$cpu1 - $cpu0" | bc -l)"
}

echo "rounds: $ROUNDS; tree: $(find "$TREE" -name '*.mod' | wc -l) .mod, $(find "$TREE" -name '*.zip' | wc -l) .zip, $(du -sh "$TREE" | cut -f1)"
cat "$W/sumdb.log"
offw=() offc=() onw=() onc=()
for r in $(seq "$ROUNDS"); do
	read -r w c < <(cold off); offw+=("$w"); offc+=("$c")
	read -r w c < <(cold "$SUMDB"); onw+=("$w"); onc+=("$c")
	echo "round $r: off ${offw[-1]}s wall ${offc[-1]}s cpu; on ${onw[-1]}s wall ${onc[-1]}s cpu"
done
if ! grep -q . "$W/holoproxy.log"; then :; else echo "holoproxy errors:"; head -5 "$W/holoproxy.log"; fi
mow=$(printf '%s\n' "${offw[@]}" | median); moc=$(printf '%s\n' "${offc[@]}" | median)
mnw=$(printf '%s\n' "${onw[@]}" | median); mnc=$(printf '%s\n' "${onc[@]}" | median)
printf '\n| cold fill, median of %s | verification off | on | on/off |\n|---|---|---|---|\n' "$ROUNDS"
printf '| holoproxy CPU (s) | %.2f | %.2f | %.2f |\n' "$moc" "$mnc" "$(ratio "$mnc" "$moc")"
printf '| go mod download all, wall (s) | %.2f | %.2f | %.2f |\n' "$mow" "$mnw" "$(ratio "$mnw" "$mow")"
