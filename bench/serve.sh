#!/usr/bin/env bash
# bench/serve.sh — holoproxy serve against nginx over one GOPROXY tree, measured in one run.
#
#   bash bench/serve.sh               # 300-module generated workload, 3 rounds each
#   ROUNDS=5 N=300 bash bench/serve.sh
#   BENCH_TREE=DIR BENCH_APP=DIR bash bench/serve.sh   # a real tree (e.g. GOMODCACHE/cache/download
#                                                      # of a `go mod download all`) and its app
#   HUGE=300 bash bench/serve.sh      # also: RSS while 8 clients fetch one 300 MB zip
#   HOLO_FLAGS="--negative-ttl 1m" bash bench/serve.sh  # extra serve flags
#   WRK_ROUNDS=5 WRK_SECONDS=5 bash bench/serve.sh     # wrk turns per server, seconds each
#   HOLO_SUMDB="KEY URL" bash bench/serve.sh  # verify against this checksum database (GOSUMDB
#                                             # syntax; default off), e.g. bench/sumdb's
#
# Prints, for the same tree: `go mod download all` with a fresh client cache from nginx
# (the baseline), through a cold holoproxy (filling from that nginx) and through a warm one,
# and, for reference, through nginx relaying to itself with no cache (what a second hop
# alone costs on this machine);
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
. bench/lib.sh
bench_init holobench
bench_workload ${HUGE:+-huge "$HUGE"}
start_nginx "$TREE"

HOLO_PORT=$(free_port)
HOLO=http://127.0.0.1:$HOLO_PORT
holo_pid=""
CACHE=$W/cache.0
start_holo() { # fresh cache when $1 = cold
	# A new directory, not rm -rf of the last one: on ext4 without a journal (these VMs'
	# root file system) every file created within minutes of a mass delete makes the
	# inode allocator skip the recently deleted inodes one by one (recently_deleted() in
	# a perf profile, ~30 % of a cold fill's CPU). The directories go with $W at exit.
	[ "$1" = cold ] && CACHE=$W/cache.$((${CACHE##*.} + 1))
	"$W/holoproxy" serve --listen "127.0.0.1:$HOLO_PORT" --cache-dir "$CACHE" --upstream "$NGINX" \
		--log-level error --sumdb "${HOLO_SUMDB:-off}" ${HOLO_FLAGS:-} 2>>"$W/holoproxy.log" &
	holo_pid=$!
	pids+=("$holo_pid")
	wait_http "$HOLO/bench.test/none/@v/list" || true
}
stop_holo() { kill "$holo_pid" 2>/dev/null || true; wait "$holo_pid" 2>/dev/null || true; }


echo "rounds: $ROUNDS; tree: $(find "$TREE" -name '*.mod' | wc -l) .mod, $(find "$TREE" -name '*.zip' | wc -l) .zip, $(du -sh "$TREE" | cut -f1)"

# One download first, not measured: the first go command of a run pays for the page cache
# and its own build cache, which would land on whichever side went first.
go_download "$NGINX" >/dev/null
direct=() relay=() cold=() warm=() cpu=() rss=()
for r in $(seq "$ROUNDS"); do
	direct+=("$(go_download "$NGINX")")
	relay+=("$(go_download "$NGINX_RELAY")")
	start_holo cold
	cold+=("$(go_download "$HOLO")")
	cpu+=("$(cpu_seconds "$holo_pid")")
	rss+=("$(peak_rss_mb "$holo_pid")")
	warm+=("$(go_download "$HOLO")")
	stop_holo
done
d=$(printf '%s\n' "${direct[@]}" | median)
c=$(printf '%s\n' "${cold[@]}" | median)
rl=$(printf '%s\n' "${relay[@]}" | median)
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
# nginx's own figure moves by a third between runs minutes apart on a shared VM: the two
# servers take turns, WRK_ROUNDS times each (default 3), and the medians are compared.
nis=() his=() nzs=() hzs=()
for r in $(seq "${WRK_ROUNDS:-3}"); do
	nis+=("$(wrk_rps "$NGINX/$INFO")"); his+=("$(wrk_rps "$HOLO/$INFO")")
	nzs+=("$(wrk_mbs "$NGINX/$ZIP")"); hzs+=("$(wrk_mbs "$HOLO/$ZIP")")
done
ni=$(printf '%s\n' "${nis[@]}" | median); hi=$(printf '%s\n' "${his[@]}" | median)
nz=$(printf '%s\n' "${nzs[@]}" | median); hz=$(printf '%s\n' "${hzs[@]}" | median)

if [ -n "${HUGE:-}" ]; then
	HUGEZIP=bench.test/huge/@v/v1.0.0.zip
	curl -sf -o /dev/null "$HOLO/$HUGEZIP" # fill once
	before=$(awk '/VmRSS/ {print $2}' "/proc/$holo_pid/status")
	clients=()
	for i in $(seq 8); do
		curl -s -o /dev/null -w '%{http_code} %{size_download}\n' "$HOLO/$HUGEZIP" >"$W/client$i" &
		clients+=($!)
	done
	peak=$before
	# nginx and holoproxy are background jobs too: watch the eight clients only.
	while for pid in "${clients[@]}"; do kill -0 "$pid" 2>/dev/null && break; done; do
		now=$(awk '/VmRSS/ {print $2}' "/proc/$holo_pid/status")
		[ "$now" -gt "$peak" ] && peak=$now
		sleep 0.05
	done
	wait "${clients[@]}" 2>/dev/null || true
	huge_growth=$(echo "scale=1; ($peak - $before) / 1024" | bc -l)
	huge_clients=$(cat "$W"/client* | sort | uniq -c | tr -s ' ' | tr '\n' ';')
fi
stop_holo

printf '\n| measure | nginx | holoproxy | ratio | target |\n|---|---|---|---|---|\n'
printf '| go mod download all, fresh client, warm holoproxy (s) | %.2f | %.2f | %s | <= 1.05 |\n' "$d" "$w" "$(ratio "$w" "$d")"
printf '| go mod download all, fresh client, cold holoproxy (s) | %.2f | %.2f | %s | <= 1.1 |\n' "$d" "$c" "$(ratio "$c" "$d")"
printf '| go mod download all, fresh client, through an nginx relay to that nginx (no cache; reference) (s) | %.2f | %.2f | %s | |\n' "$d" "$rl" "$(ratio "$rl" "$d")"
printf '| cached .info (req/s, wrk -t2 -c16, median of %s) | %.0f | %.0f | %s | >= 0.8 |\n' "${WRK_ROUNDS:-3}" "$ni" "$hi" "$(ratio "$hi" "$ni")"
printf '| cached 1 MB .zip (MB/s, wrk -t2 -c8, median of %s) | %.0f | %.0f | %s | >= 0.9 |\n' "${WRK_ROUNDS:-3}" "$nz" "$hz" "$(ratio "$hz" "$nz")"
printf '| holoproxy CPU for the cold fill (s) | | %s | | <= 2.5 |\n' "$cp"
printf '| holoproxy peak RSS, cold fill (MB) | | %s | | <= 40 |\n' "$rs"
[ -n "${huge_growth:-}" ] && printf '| RSS growth, 8 clients x %s MB zip (MB) | | %s | | a few MB |\n' "$HUGE" "$huge_growth" &&
	echo "the 8 clients got (count, status, bytes): $huge_clients"
echo
echo "rounds (s): direct ${direct[*]}; nginx relay ${relay[*]}; cold ${cold[*]}; warm ${warm[*]}"
echo "wrk rounds: .info req/s nginx ${nis[*]}; holoproxy ${his[*]}; zip MB/s nginx ${nzs[*]}; holoproxy ${hzs[*]}"
# The same turns paired: each holoproxy turn over the nginx turn just before it, which ran
# under the same machine load; the table compares the medians of each server's turns.
paired() { local -n a=$1 b=$2; for i in "${!a[@]}"; do ratio "${b[$i]}" "${a[$i]}"; done | median; }
echo "median of per-turn ratios (holoproxy turn / the nginx turn before it): .info $(paired nis his); zip $(paired nzs hzs)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
