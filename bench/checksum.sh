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
W=$(mktemp -d /tmp/holobench.XXXXXX)
chmod 755 "$W"
SHM=$(mktemp -d /dev/shm/holobench.XXXXXX 2>/dev/null || mktemp -d "$W/modcache.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W" "$SHM"
}
trap cleanup EXIT

go build -o "$W/holoproxy" ./cmd/holoproxy
go build -o "$W/sumdb" ./bench/sumdb
if [ -n "${BENCH_TREE:-}" ]; then
	TREE=$BENCH_TREE APP=${BENCH_APP:?BENCH_APP must name the app of BENCH_TREE}
else
	go run ./bench/mktree -n "$N" -out "$W/work"
	TREE=$W/work/tree APP=$W/work/app
fi
chmod -R a+rX "$W"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(free_port)
mkdir -p "$W/nginx"
cat >"$W/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	keepalive_requests 1000000;
	client_body_temp_path $W/nginx/body;
	proxy_temp_path $W/nginx/proxy;
	fastcgi_temp_path $W/nginx/fastcgi;
	uwsgi_temp_path $W/nginx/uwsgi;
	scgi_temp_path $W/nginx/scgi;
	types { application/zip zip; application/json info; text/plain mod; }
	default_type text/plain;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $TREE;
		location / { try_files \$uri =404; }
	}
}
CONF
nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
pids+=($!)
NGINX=http://127.0.0.1:$NGINX_PORT
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }
wait_http "$NGINX/"

# The checksum database over the tree: its first line is the GOSUMDB value "KEY URL".
"$W/sumdb" -tree "$TREE" >"$W/sumdb.out" 2>"$W/sumdb.log" &
pids+=($!)
for _ in $(seq 600); do [ -s "$W/sumdb.out" ] && break; sleep 0.05; done
SUMDB=$(head -1 "$W/sumdb.out")
[ -n "$SUMDB" ] || { echo "bench/sumdb did not start:" >&2; cat "$W/sumdb.log" >&2; exit 1; }

HOLO_PORT=$(free_port)
HOLO=http://127.0.0.1:$HOLO_PORT
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# cold SUMDB: a fresh holoproxy cache and client cache; prints "wall_seconds cpu_seconds".
cold() {
	rm -rf "$W/cache" "$SHM/mod" "$W/gocache"
	"$W/holoproxy" serve --listen "127.0.0.1:$HOLO_PORT" --cache-dir "$W/cache" --upstream "$NGINX" \
		--log-level error --sumdb "$1" --gonosumdb "" --goprivate "" 2>>"$W/holoproxy.log" &
	local pid=$!
	wait_http "$HOLO/bench.test/none/@v/list" || true
	local t0 t1 cpu0 cpu1
	cpu0=$(cpu_seconds "$pid")
	t0=$(date +%s.%N)
	(cd "$APP" && GOPROXY=$HOLO GOMODCACHE=$SHM/mod GOCACHE=$W/gocache GOSUMDB=off GOFLAGS=-mod=mod \
		GOTOOLCHAIN=local GOWORK=off GONOSUMDB= GOPRIVATE= GONOPROXY= go mod download all)
	t1=$(date +%s.%N)
	cpu1=$(cpu_seconds "$pid")
	kill "$pid"; wait "$pid" 2>/dev/null || true
	chmod -R u+w "$SHM/mod" 2>/dev/null || true
	echo "$(echo "$t1 - $t0" | bc -l) $(echo "$cpu1 - $cpu0" | bc -l)"
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
printf '| holoproxy CPU (s) | %.2f | %.2f | %.2f |\n' "$moc" "$mnc" "$(echo "$mnc / $moc" | bc -l)"
printf '| go mod download all, wall (s) | %.2f | %.2f | %.2f |\n' "$mow" "$mnw" "$(echo "$mnw / $mow" | bc -l)"
