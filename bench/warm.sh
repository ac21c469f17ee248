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
W=$(mktemp -d /tmp/holowarm.XXXXXX)
chmod 755 "$W"
if SHM=$(mktemp -d /dev/shm/holowarm.XXXXXX 2>/dev/null); then FS="tmpfs (/dev/shm)"; else SHM=$(mktemp -d "$W/dest.XXXXXX"); FS="disk ($W)"; fi
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	chmod -R u+w "$SHM" 2>/dev/null || true
	rm -rf "$W" "$SHM"
}
trap cleanup EXIT

go build -o "$W/holoproxy" ./cmd/holoproxy
go run ./bench/mktree -n "$N" -out "$W/work" >/dev/null
TREE=$W/work/tree APP=$W/work/app
chmod -R a+rX "$W"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
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
		listen 127.0.0.1:$PORT;
		root $TREE;
		location / { try_files \$uri =404; }
	}
}
CONF
nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
pids+=($!)
ORIGIN=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -s -o /dev/null "$ORIGIN/" && break; sleep 0.05; done

goenv=(GOSUMDB=off GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off GONOSUMDB= GOPRIVATE= GONOPROXY= GOCACHE="$W/gocache")
now() { date +%s.%N; }
gocmd() { # wall seconds of go mod download all with a fresh module cache
	chmod -R u+w "$SHM/mod" 2>/dev/null || true; rm -rf "$SHM/mod" "$W/gocache"
	local t0 t1
	t0=$(now)
	(cd "$APP" && env "${goenv[@]}" GOPROXY="$ORIGIN" GOMODCACHE="$SHM/mod" go mod download all)
	t1=$(now)
	echo "$t1 - $t0" | bc -l
}
warmcmd() { # wall seconds of holoproxy warm --to a fresh tree
	rm -rf "$SHM/tree"
	local t0 t1
	t0=$(now)
	"$W/holoproxy" warm --proxy "$ORIGIN" --to "$SHM/tree" -j "$JOBS" --progress off "$APP" 2>"$W/warm.log"
	t1=$(now)
	echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

files=$(find "$TREE" -name '*.zip' | wc -l)
echo "workload: $(grep -c . "$APP/go.sum") go.sum lines, $files zips, tree $(du -sh "$TREE" | cut -f1); destinations on $FS; $(nproc) cores; $(go version | cut -d' ' -f3); rounds $ROUNDS; warm -j $JOBS"
g=() w=()
for r in $(seq "$ROUNDS"); do
	g+=("$(gocmd)")
	w+=("$(warmcmd)")
	printf 'round %d: go mod download all %.2fs, holoproxy warm %.2fs\n' "$r" "${g[-1]}" "${w[-1]}"
done
# The last warm run's summary (figures of the observed transport).
cat "$W/warm.log"
# The tree warm wrote builds the app offline.
(cd "$APP" && env "${goenv[@]}" GOPROXY="file://$SHM/tree" GOMODCACHE="$SHM/mod2" go mod download all) && echo "check: go mod download all from the warmed tree with GOPROXY=file:// succeeded"
chmod -R u+w "$SHM/mod2" 2>/dev/null || true
gm=$(printf '%s\n' "${g[@]}" | median)
wm=$(printf '%s\n' "${w[@]}" | median)
printf '| `go mod download all`, fresh GOMODCACHE (s) | %.2f |\n| `holoproxy warm --to`, fresh tree (s) | %.2f |\n| ratio warm / go | %.3f |\n' "$gm" "$wm" "$(echo "$wm / $gm" | bc -l)"
