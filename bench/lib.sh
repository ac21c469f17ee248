# bench/lib.sh — what the bench scripts share: work directories (the client's module cache on
# a tmpfs), the workload, nginx serving it on 127.0.0.1, timing helpers. Source it from the
# repository root after `set -euo pipefail`; it talks only to 127.0.0.1.

# bench_init NAME: $W (work dir on disk) and $SHM (on /dev/shm when there is one; $FS says
# which), removed with every process in $pids when the script exits.
bench_init() {
	W=$(mktemp -d "/tmp/$1.XXXXXX")
	chmod 755 "$W"
	if SHM=$(mktemp -d "/dev/shm/$1.XXXXXX" 2>/dev/null); then FS="tmpfs (/dev/shm)"; else SHM=$(mktemp -d "$W/shm.XXXXXX"); FS="disk ($W)"; fi
	pids=()
	trap bench_cleanup EXIT
}

bench_cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	chmod -R u+w "$SHM" 2>/dev/null || true
	rm -rf "$W" "$SHM"
}

# bench_workload [mktree flags...]: builds holoproxy into $W and sets $TREE and $APP: the
# generated 300-module workload (N modules), or BENCH_TREE and BENCH_APP when set.
bench_workload() {
	go build -o "$W/holoproxy" ./cmd/holoproxy
	if [ -n "${BENCH_TREE:-}" ]; then
		TREE=$BENCH_TREE APP=${BENCH_APP:?BENCH_APP must name the app of BENCH_TREE}
	else
		go run ./bench/mktree -n "${N:-300}" -out "$W/work" "$@"
		TREE=$W/work/tree APP=$W/work/app
	fi
	chmod -R a+rX "$W"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

# start_nginx DIR: nginx serving DIR as a GOPROXY tree on a free port; sets $NGINX. The same
# nginx also relays to that server on a second port, with no cache ($NGINX_RELAY): what a
# second hop alone costs, for comparison with holoproxy's cold fill.
start_nginx() {
	local port relay
	port=$(free_port)
	relay=$(free_port)
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
		listen 127.0.0.1:$port;
		root $1;
		location / { try_files \$uri =404; }
	}
	upstream origin { server 127.0.0.1:$port; keepalive 32; }
	server {
		listen 127.0.0.1:$relay;
		location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
}
CONF
	nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
	pids+=($!)
	NGINX=http://127.0.0.1:$port
	NGINX_RELAY=http://127.0.0.1:$relay
	wait_http "$NGINX/"
	wait_http "$NGINX_RELAY/"
}

# go_download PROXY: wall seconds of `go mod download all` of $APP with a fresh module
# cache on $SHM, asking PROXY only.
go_download() {
	chmod -R u+w "$SHM/mod" 2>/dev/null || true
	rm -rf "$SHM/mod" "$W/gocache"
	local t0 t1
	t0=$(date +%s.%N)
	(cd "$APP" && GOPROXY=$1 GOMODCACHE=$SHM/mod GOCACHE=$W/gocache GOSUMDB=off GOFLAGS=-mod=mod \
		GOTOOLCHAIN=local GOWORK=off GONOSUMDB= GOPRIVATE= GONOPROXY= go mod download all)
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { echo "scale=3; $1 / $2" | bc -l; }
