#!/usr/bin/env bash
# bench/serve.sh — holoproxy serve against nginx over one GOPROXY tree, measured in one run.
#
#   bash bench/serve.sh               # 300-module generated workload, 3 rounds each
#   ROUNDS=5 N=300 bash bench/serve.sh
#   BENCH_TREE=DIR BENCH_APP=DIR bash bench/serve.sh   # a real tree (e.g. GOMODCACHE/cache/download
#                                                      # of a `go mod download all`) and its app
#   HUGE=300 bash bench/serve.sh      # also: RSS while 8 clients fetch one 300 MB zip
#   HOLO_FLAGS="--negative-ttl 1m" bash bench/serve.sh  # extra serve flags
#   HOLO_SUMDB="KEY URL" bash bench/serve.sh  # verify against this checksum database (GOSUMDB
#                                             # syntax; default off), e.g. bench/sumdb's
#
# Prints, for the same tree: `go mod download all` with a fresh client cache from nginx
# (the baseline), through a cold holoproxy (filling from that nginx) and through a warm one;
# holoproxy's CPU seconds and peak RSS for the cold fill; wrk req/s on a cached .info and
# MB/s on a cached ~1 MB .zip, holoproxy vs nginx. Needs: go, nginx, wrk (apt-get install
# nginx-light wrk). Talks only to 127.0.0.1. The client's GOMODCACHE sits on a tmpfs
# (/dev/shm) so zip extraction does not drown the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in go nginx wrk; do
	command -v "$tool" >/dev/null || { echo "bench/serve.sh: needs $tool (apt-get install nginx-light wrk)" >&2; exit 2; }
done
ROUNDS=${ROUNDS:-3}
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
if [ -n "${BENCH_TREE:-}" ]; then
	TREE=$BENCH_TREE APP=${BENCH_APP:?BENCH_APP must name the app of BENCH_TREE}
else
	go run ./bench/mktree -n "$N" -out "$W/work" ${HUGE:+-huge "$HUGE"}
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
	tcp_nopush on;
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

wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }
wait_http "$NGINX/"

HOLO_PORT=$(free_port)
HOLO=http://127.0.0.1:$HOLO_PORT
holo_pid=""
start_holo() { # fresh cache when $1 = cold
	[ "$1" = cold ] && rm -rf "$W/cache"
	"$W/holoproxy" serve --listen "127.0.0.1:$HOLO_PORT" --cache-dir "$W/cache" --upstream "$NGINX" \
		--log-level error --sumdb "${HOLO_SUMDB:-off}" ${HOLO_FLAGS:-} 2>>"$W/holoproxy.log" &
	holo_pid=$!
	pids+=("$holo_pid")
	wait_http "$HOLO/bench.test/none/@v/list" || true
}
stop_holo() { kill "$holo_pid" 2>/dev/null || true; wait "$holo_pid" 2>/dev/null || true; }
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# download PROXY: wall seconds of `go mod download all` with a fresh client cache.
download() {
	rm -rf "$SHM/mod" "$W/gocache"
	local t0 t1
	t0=$(date +%s.%N)
	(cd "$APP" && GOPROXY=$1 GOMODCACHE=$SHM/mod GOCACHE=$W/gocache GOSUMDB=off GOFLAGS=-mod=mod \
		GOTOOLCHAIN=local GOWORK=off GONOSUMDB= GOPRIVATE= GONOPROXY= go mod download all)
	t1=$(date +%s.%N)
	chmod -R u+w "$SHM/mod" 2>/dev/null || true
	echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { echo "scale=3; $1 / $2" | bc -l; }

echo "rounds: $ROUNDS; tree: $(find "$TREE" -name '*.mod' | wc -l) .mod, $(find "$TREE" -name '*.zip' | wc -l) .zip, $(du -sh "$TREE" | cut -f1)"

# One download first, not measured: the first go command of a run pays for the page cache
# and its own build cache, which would land on whichever side went first.
download "$NGINX" >/dev/null
direct=() cold=() warm=() cpu=() rss=()
for r in $(seq "$ROUNDS"); do
	direct+=("$(download "$NGINX")")
	start_holo cold
	cold+=("$(download "$HOLO")")
	cpu+=("$(cpu_seconds "$holo_pid")")
	rss+=("$(peak_rss_mb "$holo_pid")")
	warm+=("$(download "$HOLO")")
	stop_holo
done
d=$(printf '%s\n' "${direct[@]}" | median)
c=$(printf '%s\n' "${cold[@]}" | median)
w=$(printf '%s\n' "${warm[@]}" | median)
cp=$(printf '%s\n' "${cpu[@]}" | median)
rs=$(printf '%s\n' "${rss[@]}" | median)

# Throughput of cached answers: holoproxy (cache full) vs nginx, same wrk settings.
start_holo warm
INFO=bench.test/m000/@v/v1.0.0.info
ZIP=bench.test/big/@v/v1.0.0.zip
curl -sf -o /dev/null "$HOLO/$INFO" && curl -sf -o /dev/null "$HOLO/$ZIP"
wrk_rps() { wrk -t2 -c16 -d"${WRK_SECONDS:-5}"s "$1" | awk '/Requests\/sec/ {print $2}'; }
wrk_mbs() { wrk -t2 -c8 -d"${WRK_SECONDS:-5}"s "$1" | awk '/Transfer\/sec/ {v=$2; u=substr(v,length(v)-1); n=v+0; if (u=="GB") n*=1024; if (u=="KB") n/=1024; print n}'; }
ni=$(wrk_rps "$NGINX/$INFO"); hi=$(wrk_rps "$HOLO/$INFO")
nz=$(wrk_mbs "$NGINX/$ZIP"); hz=$(wrk_mbs "$HOLO/$ZIP")

if [ -n "${HUGE:-}" ]; then
	HUGEZIP=bench.test/huge/@v/v1.0.0.zip
	curl -sf -o /dev/null "$HOLO/$HUGEZIP" # fill once
	before=$(awk '/VmRSS/ {print $2}' "/proc/$holo_pid/status")
	for _ in $(seq 8); do curl -sf -o /dev/null "$HOLO/$HUGEZIP" & done
	peak=$before
	while [ "$(jobs -r | wc -l)" -gt 0 ]; do
		now=$(awk '/VmRSS/ {print $2}' "/proc/$holo_pid/status")
		[ "$now" -gt "$peak" ] && peak=$now
		sleep 0.05
	done
	wait
	huge_growth=$(echo "scale=1; ($peak - $before) / 1024" | bc -l)
fi
stop_holo

printf '\n| measure | nginx | holoproxy | ratio | target |\n|---|---|---|---|---|\n'
printf '| go mod download all, fresh client, warm holoproxy (s) | %.2f | %.2f | %s | <= 1.05 |\n' "$d" "$w" "$(ratio "$w" "$d")"
printf '| go mod download all, fresh client, cold holoproxy (s) | %.2f | %.2f | %s | <= 1.1 |\n' "$d" "$c" "$(ratio "$c" "$d")"
printf '| cached .info (req/s, wrk -c16) | %.0f | %.0f | %s | >= 0.8 |\n' "$ni" "$hi" "$(ratio "$hi" "$ni")"
printf '| cached 1 MB .zip (MB/s, wrk -c8) | %.0f | %.0f | %s | >= 0.9 |\n' "$nz" "$hz" "$(ratio "$hz" "$nz")"
printf '| holoproxy CPU for the cold fill (s) | | %s | | <= 2.5 |\n' "$cp"
printf '| holoproxy peak RSS, cold fill (MB) | | %s | | <= 40 |\n' "$rs"
[ -n "${huge_growth:-}" ] && printf '| RSS growth, 8 clients x %s MB zip (MB) | | %s | | a few MB |\n' "$HUGE" "$huge_growth"
echo
echo "rounds (s): direct ${direct[*]}; cold ${cold[*]}; warm ${warm[*]}"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
