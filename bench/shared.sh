#!/usr/bin/env bash
# bench/shared.sh — what the shared cache tier (serve --shared-cache) costs and saves, measured
# in one run over one GOPROXY tree served by nginx, with an S3 server (versitygw) on loopback.
#
#   bash bench/shared.sh            # 300-module generated workload, 5 rounds
#   ROUNDS=7 N=300 bash bench/shared.sh
#
# Prints the medians of `go mod download all` with a fresh client cache:
#   direct        from nginx (the baseline)
#   cold          through a holoproxy with an empty disk, no bucket (fills from nginx)
#   cold+bucket   the same with an empty bucket: every miss asks the bucket first, and every
#                 fill is put there (what the tier costs a replica that finds nothing)
#   from bucket   through a holoproxy with an empty disk over a bucket another replica
#                 filled, nginx stopped: a new replica of a running fleet
# and holoproxy's CPU seconds and peak RSS in each. Needs go, nginx, versitygw (README: build it from
# tools/s3gw). Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in go nginx versitygw; do
	command -v "$tool" >/dev/null || { echo "bench/shared.sh: needs $tool" >&2; exit 2; }
done
ROUNDS=${ROUNDS:-5}
N=${N:-300}
. bench/lib.sh
bench_init holoshared
bench_workload
start_nginx "$TREE"

# The S3 server over a directory; with its posix backend a bucket is a directory.
S3_PORT=$(free_port)
S3=http://127.0.0.1:$S3_PORT
mkdir -p "$W/s3"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
versitygw --port "127.0.0.1:$S3_PORT" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" --quiet --keep-alive posix "$W/s3" >"$W/s3.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do curl -s -o /dev/null "$S3/" && break; sleep 0.05; done

HOLO_PORT=$(free_port)
HOLO=http://127.0.0.1:$HOLO_PORT
holo_pid=""
n=0
# start_holo UPSTREAM [BUCKET]: holoproxy on a new, empty cache directory (not rm -rf of the
# last one: see bench/serve.sh), over s3://BUCKET when given.
start_holo() {
	n=$((n + 1))
	local shared=()
	if [ -n "${2:-}" ]; then
		mkdir -p "$W/s3/$2"
		shared=(--shared-cache "s3://$2" --s3-endpoint "$S3")
	fi
	"$W/holoproxy" serve --listen "127.0.0.1:$HOLO_PORT" --cache-dir "$W/cache.$n" --upstream "$1" \
		--log-level error --sumdb off "${shared[@]}" 2>>"$W/holoproxy.log" &
	holo_pid=$!
	pids+=("$holo_pid")
	wait_http "$HOLO/bench.test/none/@v/list" || true
}
# stop_holo: SIGTERM, which waits for the commits (and their uploads) in flight.
stop_holo() { kill "$holo_pid" 2>/dev/null || true; wait "$holo_pid" 2>/dev/null || true; }

echo "rounds: $ROUNDS; tree: $(find "$TREE" -name '*.mod' | wc -l) .mod, $(find "$TREE" -name '*.zip' | wc -l) .zip, $(du -sh "$TREE" | cut -f1)"
go_download "$NGINX" >/dev/null # page cache and the go command's build cache, not measured

# The bucket a fleet filled: one replica's cold fill.
start_holo "$NGINX" full
go_download "$HOLO" >/dev/null
stop_holo
echo "bucket filled: $(find "$W/s3/full" -type f | wc -l) objects, $(du -sh "$W/s3/full" | cut -f1)"

direct=() cold=() coldb=() fromb=() cpu_cold=() cpu_coldb=() cpu_fromb=() rss_cold=() rss_coldb=() rss_fromb=()
for r in $(seq "$ROUNDS"); do
	direct+=("$(go_download "$NGINX")")
	start_holo "$NGINX"
	cold+=("$(go_download "$HOLO")")
	cpu_cold+=("$(cpu_seconds "$holo_pid")")
	rss_cold+=("$(peak_rss_mb "$holo_pid")")
	stop_holo
	start_holo "$NGINX" "empty$r"
	coldb+=("$(go_download "$HOLO")")
	cpu_coldb+=("$(cpu_seconds "$holo_pid")")
	rss_coldb+=("$(peak_rss_mb "$holo_pid")")
	stop_holo
	# No upstream that answers: everything must come from the bucket.
	start_holo "http://127.0.0.1:1" full
	fromb+=("$(go_download "$HOLO")")
	cpu_fromb+=("$(cpu_seconds "$holo_pid")")
	rss_fromb+=("$(peak_rss_mb "$holo_pid")")
	stop_holo
done
med() { printf '%s\n' "$@" | median; }
d=$(med "${direct[@]}") c=$(med "${cold[@]}") cb=$(med "${coldb[@]}") fb=$(med "${fromb[@]}")
echo "rounds (s): direct ${direct[*]}; cold ${cold[*]}; cold+bucket ${coldb[*]}; from bucket ${fromb[*]}"
printf '%-44s %8s %10s %14s %14s\n' "go mod download all, fresh client" "median s" "/ direct" "holoproxy CPU" "peak RSS (MB)"
printf '%-44s %8s %10s %14s %14s\n' "direct (nginx)" "$d" "1" "" ""
printf '%-44s %8s %10s %14s %14s\n' "cold holoproxy, no bucket" "$c" "$(ratio "$c" "$d")" "$(med "${cpu_cold[@]}")" "$(med "${rss_cold[@]}")"
printf '%-44s %8s %10s %14s %14s\n' "cold holoproxy, empty bucket" "$cb" "$(ratio "$cb" "$d")" "$(med "${cpu_coldb[@]}")" "$(med "${rss_coldb[@]}")"
printf '%-44s %8s %10s %14s %14s\n' "cold holoproxy, filled bucket, no upstream" "$fb" "$(ratio "$fb" "$d")" "$(med "${cpu_fromb[@]}")" "$(med "${rss_fromb[@]}")"
echo "empty bucket / no bucket: $(ratio "$cb" "$c"); filled bucket / no bucket: $(ratio "$fb" "$c")"
if grep -q . "$W/holoproxy.log"; then echo "holoproxy log (errors):"; sort "$W/holoproxy.log" | uniq -c | sort -rn | head -5; fi
