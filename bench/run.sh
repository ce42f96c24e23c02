#!/usr/bin/env bash
# Benchmarks the log against this machine's own limits, in one run, and reports ratios.
#
#   bench/run.sh full    (make bench)        HTTP writes at full and half load, gRPC and mixed-key
#                                            writes, machine P-256 verify/s (openssl), the same
#                                            load on rekor-bench-ceiling (HTTP + validation, no
#                                            log), tile reads vs nginx (wrk), the raw pipeline.
#   bench/run.sh smoke   (make bench-smoke)  a tiny load over HTTP and gRPC, every response
#                                            verified, and on the ceiling; exits non-zero on any
#                                            failure. For CI.
#   bench/run.sh scale   (make bench-scale)  SCALE_ENTRIES entries (default 10,000,000): RSS,
#                                            restart time, bytes per entry beyond the leaf.
#   bench/run.sh search  (make bench-search) the search benchmark (issue #20): a log of
#                                            SEARCH_ENTRIES entries built in-process, its search
#                                            index built from zero (entries/s, CPU), the index's
#                                            bytes per entry, and GET /api/v2/search latency.
#   bench/run.sh pinned  (make bench-pinned) the server alone on core 0, the generator on core 1
#                                            (taskset): single-core P-256 verify/s (openssl on
#                                            core 0), HTTP writes at c=1024 with the server's CPU
#                                            per entry from /proc, the ceiling the same way, and
#                                            the p50 of a c=256 round. Needs taskset and 2 CPUs.
#   bench/run.sh profile (make bench-profile) pinned as above, one round each of ours and the
#                                            ceiling under `perf record`: where the CPU per entry
#                                            goes, by category (bench/profile_breakdown.py).
#                                            Needs perf and python3.
#
# Every figure is printed next to the command that produced it. The last line of `full` is
#   entries_per_s=<n> p256_verify_per_s=<n> ratio=<x.xx> p50_ms=<x.x> p99_ms=<x.x>
# (p50/p99 from the half-load run). The last line of `pinned` is (medians over rounds)
#   pinned entries_per_s=<n> p256_verify_per_s_core0=<n> ratio=<x.xx> server_us_per_entry=<x.x>
#   ceiling_ratio=<x.xx> ceiling_us_per_entry=<x.x> p50_ms_c256=<x.x> target_ratio=0.75
#   target_p50_ms_c256=15
# (one line; targets are reported, not enforced). Servers listen on 127.0.0.1 only; every load
# is bounded.
#
# Environment: CARGO, CARGO_TARGET_DIR, BENCH_PROFILE (release|debug), BENCH_PORT (first port
# to try, default 13000), BENCH_REQUESTS (20000 per round), BENCH_ROUNDS (3; the full-load rate
# is their median, and so are the tile-read figures), BENCH_CONCURRENCY (1024), BENCH_HALF_SECONDS
# (12), BENCH_READ_SECONDS (4; one wrk round), SCALE_ENTRIES (10000000),
# BENCH_KEEP=1 keeps the temp dir. Pinned mode only: BENCH_OPENSSL_SECONDS (5; per openssl phase,
# sign then verify), BENCH_LOW_CONCURRENCY (256; the latency round). Search mode only:
# SEARCH_ENTRIES (1000000), SEARCH_QUERIES (2000 timed per class), SEARCH_ARGS (more flags for
# rekor-bench-search, e.g. "--distribution uniform"); the log lives in the temp dir under TMPDIR.
set -euo pipefail

# 1024 connections need more open files than the usual soft limit of 1024, in the generator and
# in the server (both inherit this shell's limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

MODE=${1:-full}
case "$MODE" in full | smoke | scale | pinned | profile | search) ;; *)
	echo "usage: $0 [full|smoke|scale|pinned|profile|search]" >&2
	exit 2
	;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$MODE" = smoke ]; then PROFILE=${BENCH_PROFILE:-debug}; else PROFILE=${BENCH_PROFILE:-release}; fi
BIN=$TARGET_DIR/$PROFILE
HOST=bench.localhost
REQUESTS=${BENCH_REQUESTS:-20000}
ROUNDS=${BENCH_ROUNDS:-3}
CONCURRENCY=${BENCH_CONCURRENCY:-1024}
HALF_SECONDS=${BENCH_HALF_SECONDS:-12}
READ_SECONDS=${BENCH_READ_SECONDS:-4}
SCALE_ENTRIES=${SCALE_ENTRIES:-10000000}
SEARCH_ENTRIES=${SEARCH_ENTRIES:-1000000}
SEARCH_QUERIES=${SEARCH_QUERIES:-2000}
OPENSSL_SECONDS=${BENCH_OPENSSL_SECONDS:-5}
LOW_CONCURRENCY=${BENCH_LOW_CONCURRENCY:-256}
PROFILE_HZ=${BENCH_PROFILE_HZ:-999}
# Pinned mode: the server (and the ceiling, and openssl) on this core, the generator on the other.
SERVER_CPU=0
CLIENT_CPU=1
# Pinned mode's targets (printed beside the figures; the run does not fail on them).
TARGET_RATIO=0.75
TARGET_P50_MS=15

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rekor-bench.XXXXXX")
SERVER_PID=
NGINX_PID=
CEILING_PID=
# Command prefixes for the servers and the generator (`taskset -c N` in pinned mode, else empty).
SERVER_PIN=()
CLIENT_PIN=()

log() { printf '%s\n' "$*"; }
die() {
	log "bench: FAILED: $*"
	exit 1
}

cleanup() {
	local rc=$?
	if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
		kill -QUIT "$NGINX_PID" 2>/dev/null || true
		wait "$NGINX_PID" 2>/dev/null || true
	fi
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	if [ -n "$CEILING_PID" ] && kill -0 "$CEILING_PID" 2>/dev/null; then
		kill "$CEILING_PID" 2>/dev/null || true
		wait "$CEILING_PID" 2>/dev/null || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$WORK/server.log" ]; then
		log "--- last lines of the server log ($WORK/server.log) ---"
		tail -n 20 "$WORK/server.log" || true
	fi
	if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
		log "bench: kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command after printing it, so every figure can be traced to the command behind it.
run() {
	log "\$ $*"
	"$@"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Picks four consecutive free ports starting at BENCH_PORT.
pick_ports() {
	local base=${BENCH_PORT:-13000}
	local tries=0
	while port_busy "$base" || port_busy $((base + 1)) || port_busy $((base + 2)) || port_busy $((base + 3)); do
		base=$((base + 10))
		tries=$((tries + 1))
		[ "$tries" -lt 50 ] || die "no free ports near ${BENCH_PORT:-13000}"
	done
	HTTP_PORT=$base
	GRPC_PORT=$((base + 1))
	METRICS_PORT=$((base + 2))
	NGINX_PORT=$((base + 3))
	HTTP_URL=http://127.0.0.1:$HTTP_PORT
	GRPC_URL=http://127.0.0.1:$GRPC_PORT
}

build() {
	local flag=()
	[ "$PROFILE" = release ] && flag=(--release)
	[ "$PROFILE" = release ] || [ "$PROFILE" = debug ] || die "BENCH_PROFILE must be release or debug"
	run "$CARGO" build "${flag[@]}" -p rekor-server-posix -p rekor-bench
	local bin
	for bin in rekor-server-posix rekor-bench rekor-bench-ceiling rekor-bench-search; do
		[ -x "$BIN/$bin" ] || die "binaries missing in $BIN ($bin)"
	done
}

# Prints the log's public key (base64 DER SPKI); generates the key in the storage dir if new.
public_key() {
	"$BIN/rekor-server-posix" info --storage-dir "$1" --hostname "$HOST" |
		awk '/^public key:/ { print $3; exit }'
}

# fresh_log <dir>: makes the log directory and sets LOG_KEY from the key `info` reads there.
fresh_log() {
	mkdir -p "$1"
	LOG_KEY=$(public_key "$1")
	[ -n "$LOG_KEY" ] || die "could not read the log's public key from 'info'"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# start_server <storage dir> [extra flags]: starts the server and waits until /healthz answers.
start_server() {
	local dir=$1
	shift
	"${SERVER_PIN[@]}" "$BIN/rekor-server-posix" serve --storage-dir "$dir" --hostname "$HOST" \
		--http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" --http-metrics-port "$METRICS_PORT" \
		--log-level warn "$@" >>"$WORK/server.log" 2>&1 &
	SERVER_PID=$!
	local started
	started=$(date +%s%N)
	until http_ok "$HTTP_URL/healthz"; do
		kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited during start-up"
		[ $(($(date +%s%N) - started)) -lt 600000000000 ] || die "the server did not answer /healthz within 600 s"
		sleep 0.02
	done
	READY_MS=$((($(date +%s%N) - started) / 1000000))
}

# Starts rekor-bench-ceiling on NGINX_PORT (free until section 5), answering with as many bytes
# as the real server's answers in the warm-up (2,048 without one), and waits until it answers.
start_ceiling() {
	local answer_bytes
	answer_bytes=$(result "$WORK/warmup.out" answer_bytes 2>/dev/null || true)
	CEILING_URL=http://127.0.0.1:$NGINX_PORT
	"${SERVER_PIN[@]}" "$BIN/rekor-bench-ceiling" --listen "127.0.0.1:$NGINX_PORT" --answer-bytes "${answer_bytes:-2048}" \
		>>"$WORK/ceiling.log" 2>&1 &
	CEILING_PID=$!
	local tries=0
	until http_ok "$CEILING_URL/healthz"; do
		kill -0 "$CEILING_PID" 2>/dev/null || die "rekor-bench-ceiling exited during start-up"
		tries=$((tries + 1))
		[ "$tries" -lt 500 ] || die "rekor-bench-ceiling did not answer within 10 s"
		sleep 0.02
	done
}

stop_ceiling() {
	kill "$CEILING_PID" 2>/dev/null || true
	wait "$CEILING_PID" 2>/dev/null || true
	CEILING_PID=
}

# Stops the server with SIGTERM (graceful: drains and publishes) and checks it exits 0.
stop_server() {
	local started
	started=$(date +%s%N)
	kill -TERM "$SERVER_PID"
	local rc=0
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	STOP_MS=$((($(date +%s%N) - started) / 1000000))
	[ "$rc" -eq 0 ] || die "the server exited with status $rc on SIGTERM"
}

rss_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

# cpu_ticks <pid>: the user + system CPU time a process has used, in clock ticks (the name in
# field 2 of /proc/<pid>/stat has no spaces for our binaries).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# result <file> <key>: a value from the RESULT line rekor-bench printed last.
result() { awk -v key="$2" '/^RESULT / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) print kv[2] } }' "$1" | tail -n 1; }

# load <name> <rekor-bench args...>: runs the generator, shows its output, keeps it in $WORK/<name>.out.
load() {
	local name=$1
	shift
	local rc=0
	run "${CLIENT_PIN[@]}" "$BIN/rekor-bench" --hostname "$HOST" --log-public-key "$LOG_KEY" "$@" | tee "$WORK/$name.out" || rc=$?
	[ "$rc" -eq 0 ] || die "rekor-bench run '$name' failed (exit $rc)"
}

# The machine is shared: note how busy it was around each measurement.
loadavg() { log "(load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores)"; }

calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# median <values...>: the middle one (the lower middle for an even count).
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }

# ---------------------------------------------------------------------------------------------

smoke() {
	build
	pick_ports
	local data=$WORK/data
	fresh_log "$data"
	start_server "$data"
	local passed=0
	load http --http "$HTTP_URL" --requests 200 --concurrency 8 --verify-every 1 --resend 20
	passed=$((passed + 1))
	load grpc --grpc "$GRPC_URL" --requests 100 --concurrency 8 --verify-every 1 --resend 10 \
		--mix p256=2,ed25519ph=1,rsa2048=1 --keys 1
	passed=$((passed + 1))
	load rate --http "$HTTP_URL" --requests 100 --rate 200 --concurrency 32 --verify-every 5
	passed=$((passed + 1))
	for path in checkpoint tile/0/000 tile/entries/000; do
		run curl -fsS -o /dev/null "$HTTP_URL/api/v2/$path" || die "GET /api/v2/$path failed"
	done
	passed=$((passed + 1))
	stop_server
	passed=$((passed + 1))
	start_ceiling
	load ceiling --http "$CEILING_URL" --requests 100 --concurrency 8 --verify-every 0
	stop_ceiling
	passed=$((passed + 1))
	# The search benchmark's tool, tiny: a 3,000-entry log, its index, 20 queries per class.
	run "$BIN/rekor-bench-search" --dir "$WORK/search" --entries 3000 --keys 50 --identities 10 \
		--queries 20 --warmup 2 --server-bin "$BIN/rekor-server-posix" --port "$HTTP_PORT" \
		--hostname "$HOST" --max-build-seconds 120 --max-index-seconds 120 --max-query-seconds 120 \
		>"$WORK/search.out" || { tail -n 20 "$WORK/search.out"; die "rekor-bench-search failed"; }
	tail -n 1 "$WORK/search.out"
	passed=$((passed + 1))
	log "bench-smoke: $passed passed, 0 failed"
}

# ---------------------------------------------------------------------------------------------

openssl_verify() {
	command -v openssl >/dev/null || die "openssl is needed for the machine's P-256 verify rate"
	run openssl speed -seconds 5 -multi 2 ecdsap256 2>/dev/null | tee "$WORK/openssl.out" | tail -n 2
	P256_VERIFY=$(awk '/nistp256/ { v = $NF } END { print v }' "$WORK/openssl.out")
	[ -n "$P256_VERIFY" ] || die "could not parse openssl speed output"
}

ensure_tools() {
	local missing=()
	command -v wrk >/dev/null || missing+=(wrk)
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
	command -v curl >/dev/null || missing+=(curl)
	if [ "${#missing[@]}" -gt 0 ]; then
		[ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them (Debian packages) and re-run"
		run apt-get update -qq
		run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

start_nginx() {
	local data=$1 conf=$WORK/nginx/nginx.conf
	mkdir -p "$WORK/nginx/tmp"
	local user=""
	[ "$(id -u)" = 0 ] && user="user root;"
	cat >"$conf" <<EOF
$user
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /api/v2/ {
            alias $data/;
            add_header Cache-Control "max-age=604800,immutable";
        }
    }
}
EOF
	log "\$ $NGINX -c $conf -e $WORK/nginx/error.log   (config: $conf)"
	"$NGINX" -c "$conf" -e "$WORK/nginx/error.log" &
	NGINX_PID=$!
	local n=0
	until http_ok "http://127.0.0.1:$NGINX_PORT/api/v2/checkpoint"; do
		kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat "$WORK/nginx/error.log" 2>/dev/null)"
		n=$((n + 1))
		[ "$n" -lt 500 ] || die "nginx did not serve the checkpoint"
		sleep 0.02
	done
}

# children <pid>: the pids of a process's children (nginx's workers under its master).
children() { awk -v parent="$1" '$4 == parent { print $1 }' /proc/[0-9]*/stat 2>/dev/null; }

# read_round <name> <url> <pid...>: one `wrk` run of READ_SECONDS with 32 connections (one wrk
# thread); prints its requests/s and the CPU the given processes used per read, in µs.
read_round() {
	local name=$1 url=$2
	shift 2
	local before=0 after=0 pid
	for pid in "$@"; do before=$((before + $(cpu_ticks "$pid"))); done
	log "\$ wrk -t1 -c32 -d${READ_SECONDS}s $url" >&2
	wrk -t1 -c32 -d"${READ_SECONDS}s" "$url" >"$WORK/wrk-$name.out" || die "wrk $name failed"
	for pid in "$@"; do after=$((after + $(cpu_ticks "$pid"))); done
	if grep -q 'Non-2xx' "$WORK/wrk-$name.out"; then die "wrk $name got error responses"; fi
	local rate reads
	rate=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk-$name.out")
	reads=$(awk '/ requests in / { print $1 }' "$WORK/wrk-$name.out")
	if [ -z "$rate" ] || [ -z "$reads" ] || [ "$reads" -eq 0 ]; then die "could not parse wrk output for $name"; fi
	printf '%s %s\n' "$rate" "$(calc '%.1f' "($after - $before) * 1000000 / $(getconf CLK_TCK) / $reads")"
}

# read_bench <name> <path>: ROUNDS rounds of `wrk` on <path>, alternating our server and nginx
# (one busy minute then hurts both, not one), and sets READS_<NAME>_{OURS,NGINX,OURS_US,NGINX_US}
# to the medians of requests/s and of server CPU per read.
read_bench() {
	local name=$1 path=$2
	local ours=() nginx=() ours_us=() nginx_us=() round line workers
	# shellcheck disable=SC2207 # pids are numbers
	workers=($(children "$NGINX_PID"))
	[ "${#workers[@]}" -gt 0 ] || die "nginx has no worker processes"
	for round in $(seq 1 "$ROUNDS"); do
		line=$(read_round "ours-$name-$round" "$HTTP_URL/api/v2/$path" "$SERVER_PID")
		ours+=("${line% *}")
		ours_us+=("${line#* }")
		line=$(read_round "nginx-$name-$round" "http://127.0.0.1:$NGINX_PORT/api/v2/$path" "${workers[@]}")
		nginx+=("${line% *}")
		nginx_us+=("${line#* }")
		log "$path round $round: ours ${ours[-1]}/s (${ours_us[-1]} us CPU per read), nginx ${nginx[-1]}/s (${nginx_us[-1]} us)"
	done
	local upper=${name^^}
	printf -v "READS_${upper}_OURS" '%s' "$(median "${ours[@]}")"
	printf -v "READS_${upper}_NGINX" '%s' "$(median "${nginx[@]}")"
	printf -v "READS_${upper}_OURS_US" '%s' "$(median "${ours_us[@]}")"
	printf -v "READS_${upper}_NGINX_US" '%s' "$(median "${nginx_us[@]}")"
}

# read_summary <label> <name>: the summary line of one read_bench.
read_summary() {
	local ours nginx ours_us nginx_us
	ours=READS_${2^^}_OURS nginx=READS_${2^^}_NGINX ours_us=READS_${2^^}_OURS_US nginx_us=READS_${2^^}_NGINX_US
	log "$1 reads/s (median of $ROUNDS): ours ${!ours}, nginx ${!nginx}, ratio $(calc '%.2f' "${!ours} / ${!nginx}")   (>= 1.00); CPU per read: ours ${!ours_us} us, nginx ${!nginx_us} us"
}

pipeline_bench() {
	run "$CARGO" bench -p rekor-log --bench pipeline -- --noplot 2>&1 | tee "$WORK/pipeline.out" |
		grep -E '^pipeline/|time:|thrpt:' || true
	local backend est
	for backend in memory posix; do
		est=$TARGET_DIR/criterion/pipeline/$backend/new/estimates.json
		[ -f "$est" ] || die "criterion wrote no $est"
		# Mean nanoseconds per iteration; each iteration logs 4096 entries (ENTRIES in the bench).
		local mean
		mean=$(grep -o '"mean":{"confidence_interval":{[^}]*},"point_estimate":[0-9.e+-]*' "$est" | sed 's/.*point_estimate"://')
		[ -n "$mean" ] || die "could not read the mean from $est"
		printf -v "PIPELINE_${backend^^}" '%s' "$(calc '%.0f' "4096 / ($mean / 1e9)")"
	done
}

full() {
	ensure_tools
	build
	run "$CARGO" bench -p rekor-log --bench pipeline --no-run
	pick_ports
	local data=$WORK/data
	fresh_log "$data"

	log ""
	log "== 1. machine limit: OpenSSL ECDSA P-256 verifies per second, both cores (idle machine)"
	loadavg
	openssl_verify
	log "p256_verify_per_s=$P256_VERIFY"

	log ""
	log "== 2. HTTP writes (P-256, persistent dedup on, server defaults) on a fresh log, each round"
	log "      followed by the same load on rekor-bench-ceiling (HTTP + validation only, no log)"
	start_server "$data"
	load warmup --http "$HTTP_URL" --requests 2000 --concurrency "$CONCURRENCY" --verify-every 100 >/dev/null
	start_ceiling
	load ceiling-warmup --http "$CEILING_URL" --requests 2000 --concurrency "$CONCURRENCY" --verify-every 0 >/dev/null
	# The machine is shared and noisy: the maximum is the median of ROUNDS closed-loop rounds,
	# and the ceiling's rounds alternate with ours so both see the same moments.
	local round rates=() client_us=() ceiling_rates=() created=0 ceiling_created=0
	local ticks=0 ceiling_ticks=0 before
	for round in $(seq 1 "$ROUNDS"); do
		loadavg
		before=$(cpu_ticks "$SERVER_PID")
		load "max-$round" --http "$HTTP_URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --verify-every 100
		ticks=$((ticks + $(cpu_ticks "$SERVER_PID") - before))
		rates+=("$(result "$WORK/max-$round.out" entries_per_s)")
		client_us+=("$(result "$WORK/max-$round.out" client_cpu_us)")
		created=$((created + $(result "$WORK/max-$round.out" created)))
		before=$(cpu_ticks "$CEILING_PID")
		load "ceiling-$round" --http "$CEILING_URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --verify-every 0
		ceiling_ticks=$((ceiling_ticks + $(cpu_ticks "$CEILING_PID") - before))
		ceiling_rates+=("$(result "$WORK/ceiling-$round.out" entries_per_s)")
		ceiling_created=$((ceiling_created + $(result "$WORK/ceiling-$round.out" created)))
	done
	stop_ceiling
	# The load generator shares the two cores: the server's own CPU per entry, against one
	# verify's CPU (openssl ran on both cores), is the ratio with the generator taken out.
	SERVER_US=$(calc '%.1f' "$ticks * 1000000 / $(getconf CLK_TCK) / $created")
	CEILING_US=$(calc '%.1f' "$ceiling_ticks * 1000000 / $(getconf CLK_TCK) / $ceiling_created")
	VERIFY_US=$(calc '%.1f' "2 * 1000000 / $P256_VERIFY")
	MAX_RATE=$(median "${rates[@]}")
	CLIENT_US=$(median "${client_us[@]}")
	CEILING_RATE=$(median "${ceiling_rates[@]}")
	log "HTTP rounds (entries/s): ${rates[*]}; median $MAX_RATE"
	log "ceiling rounds (entries/s): ${ceiling_rates[*]}; median $CEILING_RATE"
	SERVER_RSS=$(rss_kib "$SERVER_PID" VmRSS)
	local half half_requests
	half=$(calc '%.0f' "$MAX_RATE / 2")
	half_requests=$(calc '%.0f' "$half * $HALF_SECONDS")
	log ""
	log "== 3. HTTP latency at half the measured maximum ($half entries/s for ${HALF_SECONDS} s, open loop)"
	loadavg
	load half --http "$HTTP_URL" --rate "$half" --requests "$half_requests" --concurrency 2048 --verify-every 100
	log ""
	log "== 4. gRPC writes and a mixed-key HTTP run (informational)"
	load grpc --grpc "$GRPC_URL" --requests 10000 --concurrency "$CONCURRENCY" --verify-every 100
	load mix --http "$HTTP_URL" --requests 10000 --concurrency "$CONCURRENCY" --verify-every 100 \
		--mix p256=8,ed25519ph=1,rsa2048=1

	log ""
	log "== 5. tile reads: our server vs nginx serving the same directory"
	start_nginx "$data"
	loadavg
	# Warm both (our tile cache, nginx's open files and page cache) before the measured rounds.
	wrk -t1 -c32 -d1s "$HTTP_URL/api/v2/tile/entries/000" >/dev/null
	wrk -t1 -c32 -d1s "http://127.0.0.1:$NGINX_PORT/api/v2/tile/entries/000" >/dev/null
	read_bench tile tile/0/000
	read_bench bundle tile/entries/000
	kill -QUIT "$NGINX_PID"
	wait "$NGINX_PID" 2>/dev/null || true
	NGINX_PID=
	stop_server

	log ""
	log "== 6. raw pipeline (criterion): pre-made leaves into Log::add, no HTTP, no signature checks"
	loadavg
	pipeline_bench

	local ratio p50 p99
	ratio=$(calc '%.2f' "$MAX_RATE / $P256_VERIFY")
	p50=$(calc '%.1f' "$(result "$WORK/half.out" p50_ms)")
	p99=$(calc '%.1f' "$(result "$WORK/half.out" p99_ms)")
	log ""
	log "== summary (targets in parentheses)"
	log "HTTP P-256 writes/s, c=$CONCURRENCY (median of $ROUNDS): $MAX_RATE  = $ratio x machine P-256 verify/s ($P256_VERIFY)   (>= 0.60)"
	log "server CPU per entry at full load:     $SERVER_US us; one P-256 verify: $VERIFY_US us; ratio $(calc '%.2f' "$VERIFY_US / $SERVER_US")   (the ratio above without the load generator's CPU)"
	log "load generator CPU per request:         $CLIENT_US us (median round; it shares the two cores with the server)"
	log "ceiling (HTTP + validation, no log):    $CEILING_RATE entries/s = $(calc '%.2f' "$CEILING_RATE / $P256_VERIFY") x verify/s, $CEILING_US us CPU per entry; ours = $(calc '%.2f' "$MAX_RATE / $CEILING_RATE") of it"
	log "half load ($half/s): p50 ${p50} ms, p90 $(result "$WORK/half.out" p90_ms) ms, p99 ${p99} ms, max $(result "$WORK/half.out" max_ms) ms   (p50 <= 30, p99 <= 150)"
	log "gRPC P-256 writes/s, c=$CONCURRENCY:        $(result "$WORK/grpc.out" entries_per_s)  = $(calc '%.2f' "$(result "$WORK/grpc.out" entries_per_s) / $P256_VERIFY") x verify/s"
	log "HTTP mixed p256=8,ed25519ph=1,rsa2048=1:   $(result "$WORK/mix.out" entries_per_s) entries/s"
	log "server RSS after the full-load run:       $SERVER_RSS KiB"
	read_summary tile/0/000 tile
	read_summary tile/entries/000 bundle
	log "raw pipeline entries/s:    memory $PIPELINE_MEMORY, posix $PIPELINE_POSIX   (>= 50000)"
	log "entries_per_s=$(calc '%.0f' "$MAX_RATE") p256_verify_per_s=$(calc '%.0f' "$P256_VERIFY") ratio=$ratio p50_ms=$p50 p99_ms=$p99"
}

# ---------------------------------------------------------------------------------------------

scale() {
	build
	pick_ports
	local data=$WORK/data
	fresh_log "$data"
	start_server "$data"
	log "== scale: $SCALE_ENTRIES entries over HTTP (signed in chunks of 200,000 outside the timed phases)"
	load scale --http "$HTTP_URL" --requests "$SCALE_ENTRIES" --concurrency "$CONCURRENCY" \
		--chunk 200000 --verify-every 10000 --resend 1000
	local created leaf_bytes rss hwm
	created=$(result "$WORK/scale.out" created)
	leaf_bytes=$(result "$WORK/scale.out" leaf_bytes)
	rss=$(rss_kib "$SERVER_PID" VmRSS)
	hwm=$(rss_kib "$SERVER_PID" VmHWM)
	stop_server
	local stop_ms=$STOP_MS
	local apparent disk
	apparent=$(du -sb "$data" | cut -f1)
	disk=$(du -sk "$data" | cut -f1)
	log "\$ du -sb $data   -> $apparent bytes (du -sk: $disk KiB)"
	# Where the bytes are: entry bundles and hash tiles, full and partial, and private state
	# (the sequencing journal, emptied by a clean stop, and the dedup index's runs).
	local sizes
	sizes=$(find "$data" -type f -printf '%s %P\n' | awk '
		$2 ~ /^tile\/entries\/.*\.p\// { pb += $1; next }
		$2 ~ /^tile\/entries\// { fb += $1; next }
		$2 ~ /^tile\/.*\.p\// { pt += $1; next }
		$2 ~ /^tile\// { ft += $1; next }
		$2 ~ /^\.rekor\/journal\// { jn += $1; pr += $1; next }
		$2 ~ /^\.rekor\/dedup\// { dd += $1; pr += $1; next }
		$2 ~ /^\.rekor\// { pr += $1; next }
		{ other += $1 }
		END { printf "full bundles %d, partial bundles %d, full hash tiles %d, partial hash tiles %d, .rekor %d (journal %d, dedup runs %d), other %d", fb, pb, ft, pt, pr, jn, dd, other }')
	log "bytes by kind: $sizes"
	log "== restart: time from exec to /healthz answering (recovery included)"
	start_server "$data"
	local ready_ms=$READY_MS rss_idle
	rss_idle=$(rss_kib "$SERVER_PID" VmRSS)
	load after-restart --http "$HTTP_URL" --requests 1000 --concurrency "$CONCURRENCY" --verify-every 10 --resend 0
	stop_server
	log ""
	log "== scale summary"
	log "entries logged: $created   leaf bytes: $leaf_bytes   write rate: $(result "$WORK/scale.out" entries_per_s) entries/s"
	log "server RSS after the load: $rss KiB (peak $hwm KiB); after restart, idle: $rss_idle KiB"
	log "graceful stop: $stop_ms ms   restart to /healthz: $ready_ms ms"
	log "storage: $apparent bytes apparent, $((disk * 1024)) bytes on disk"
	log "bytes by kind: $sizes"
	log "bytes per entry beyond the leaf: $(calc '%.1f' "($apparent - $leaf_bytes) / $created") apparent, $(calc '%.1f' "($disk * 1024 - $leaf_bytes) / $created") on disk"
	log "scale_entries=$created rss_kib=$rss peak_rss_kib=$hwm restart_ms=$ready_ms bytes_per_entry_beyond_leaf=$(calc '%.1f' "($apparent - $leaf_bytes) / $created")"
}

# ---------------------------------------------------------------------------------------------

# Fails unless taskset can put the server and the generator on two cores of their own.
pinned_preflight() {
	command -v taskset >/dev/null ||
		die "pinned mode needs taskset (Debian/Ubuntu package util-linux; apt-get install util-linux)"
	local cpus
	cpus=$(nproc)
	[ "$cpus" -ge 2 ] ||
		die "pinned mode needs 2 CPUs (server on CPU $SERVER_CPU, generator on CPU $CLIENT_CPU); this process may use $cpus"
	local cpu
	for cpu in "$SERVER_CPU" "$CLIENT_CPU"; do
		taskset -c "$cpu" true 2>/dev/null ||
			die "cannot pin to CPU $cpu with taskset; allowed here: $(taskset -pc $$ | awk -F': ' '{ print $2 }')"
	done
	command -v openssl >/dev/null || die "openssl is needed for the single-core P-256 verify rate"
	command -v curl >/dev/null || die "curl is needed to wait for the servers"
}

# One OpenSSL process on the server's core: single-core ECDSA P-256 verifies per second.
openssl_verify_core() {
	run taskset -c "$SERVER_CPU" openssl speed -seconds "$OPENSSL_SECONDS" ecdsap256 2>/dev/null |
		tee "$WORK/openssl-core.out" | tail -n 2 || die "openssl speed failed"
	P256_VERIFY_CORE=$(awk '/nistp256/ { v = $NF } END { print v }' "$WORK/openssl-core.out")
	[ -n "$P256_VERIFY_CORE" ] || die "could not parse openssl speed output"
}

# start_pinned_pair <dir>: pins servers to SERVER_CPU and generators to CLIENT_CPU, starts ours on
# <dir> and the ceiling beside it, and warms each up with 2,000 requests.
start_pinned_pair() {
	local data=$1
	SERVER_PIN=(taskset -c "$SERVER_CPU")
	CLIENT_PIN=(taskset -c "$CLIENT_CPU")
	log "\$ ${SERVER_PIN[*]} $BIN/rekor-server-posix serve --storage-dir $data --hostname $HOST --http-port $HTTP_PORT --grpc-port $GRPC_PORT --http-metrics-port $METRICS_PORT --log-level warn"
	start_server "$data"
	load warmup --http "$HTTP_URL" --requests 2000 --concurrency "$CONCURRENCY" --verify-every 100 >/dev/null
	start_ceiling
	log "\$ ${SERVER_PIN[*]} $BIN/rekor-bench-ceiling --listen 127.0.0.1:$NGINX_PORT --answer-bytes $(result "$WORK/warmup.out" answer_bytes)"
	load ceiling-warmup --http "$CEILING_URL" --requests 2000 --concurrency "$CONCURRENCY" --verify-every 0 >/dev/null
}

# pinned_round <name> <pid> <idle pid> <rekor-bench args...>: one load on the process <pid>, with
# the other pinned process idle beside it. Sets ROUND_{RATE,P50,P99,US,BUSY,CLIENT_US}: entries/s,
# latency in ms, the process's CPU per acknowledged entry in µs (utime + stime from
# /proc/<pid>/stat over the whole generator run, which is idle for it apart from the timed
# phase), how much of its core it used over the timed phase, and the generator's CPU per request.
pinned_round() {
	local name=$1 pid=$2 idle=$3
	shift 3
	local hz before idle_before ticks idle_ticks created elapsed
	hz=$(getconf CLK_TCK)
	before=$(cpu_ticks "$pid")
	idle_before=$(cpu_ticks "$idle")
	load "$name" "$@"
	ticks=$(($(cpu_ticks "$pid") - before))
	idle_ticks=$(($(cpu_ticks "$idle") - idle_before))
	created=$(result "$WORK/$name.out" created)
	elapsed=$(result "$WORK/$name.out" elapsed_s)
	ROUND_RATE=$(result "$WORK/$name.out" entries_per_s)
	ROUND_P50=$(result "$WORK/$name.out" p50_ms)
	ROUND_P99=$(result "$WORK/$name.out" p99_ms)
	ROUND_CLIENT_US=$(result "$WORK/$name.out" client_cpu_us)
	ROUND_US=$(calc '%.1f' "$ticks * 1000000 / $hz / $created")
	ROUND_BUSY=$(calc '%.2f' "$ticks / $hz / $elapsed")
	log "$name: $ROUND_RATE entries/s, p50 $ROUND_P50 ms, p99 $ROUND_P99 ms; CPU $ROUND_US us per entry ($ticks ticks at $hz/s over $created acknowledged entries), $ROUND_BUSY of core $SERVER_CPU over the timed ${elapsed} s; the idle process beside it used $idle_ticks ticks; generator $ROUND_CLIENT_US us per request on core $CLIENT_CPU"
}

# meets <awk condition>: "yes" or "no".
meets() { if awk "BEGIN { exit !($1) }"; then echo yes; else echo no; fi; }

pinned() {
	pinned_preflight
	build
	pick_ports
	local data=$WORK/data
	fresh_log "$data"

	log ""
	log "== 1. single-core limit: OpenSSL ECDSA P-256 verifies per second, one process on core $SERVER_CPU"
	loadavg
	openssl_verify_core
	local verify_us
	verify_us=$(calc '%.1f' "1000000 / $P256_VERIFY_CORE")
	log "p256_verify_per_s_core$SERVER_CPU=$P256_VERIFY_CORE ($verify_us us per verify)"

	log ""
	log "== 2. HTTP writes with the server alone on core $SERVER_CPU and the generator on core $CLIENT_CPU (P-256,"
	log "      server defaults, fresh log). Each round: ours at c=$CONCURRENCY, rekor-bench-ceiling (HTTP +"
	log "      validation, no log, also on core $SERVER_CPU) at c=$CONCURRENCY, ours at c=$LOW_CONCURRENCY"
	start_pinned_pair "$data"
	local round rates=() us=() p50s=() p99s=() busy=() client_us=()
	local ceiling_rates=() ceiling_us=() low_rates=() low_p50s=() low_p99s=() low_busy=()
	for round in $(seq 1 "$ROUNDS"); do
		loadavg
		pinned_round "max-$round" "$SERVER_PID" "$CEILING_PID" \
			--http "$HTTP_URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --verify-every 100
		rates+=("$ROUND_RATE") us+=("$ROUND_US") p50s+=("$ROUND_P50") p99s+=("$ROUND_P99")
		busy+=("$ROUND_BUSY") client_us+=("$ROUND_CLIENT_US")
		pinned_round "ceiling-$round" "$CEILING_PID" "$SERVER_PID" \
			--http "$CEILING_URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --verify-every 0
		ceiling_rates+=("$ROUND_RATE") ceiling_us+=("$ROUND_US")
		pinned_round "c$LOW_CONCURRENCY-$round" "$SERVER_PID" "$CEILING_PID" \
			--http "$HTTP_URL" --requests "$REQUESTS" --concurrency "$LOW_CONCURRENCY" --verify-every 100
		low_rates+=("$ROUND_RATE") low_p50s+=("$ROUND_P50") low_p99s+=("$ROUND_P99") low_busy+=("$ROUND_BUSY")
		# A closed loop of n clients answered at r/s waits n / r on average (Little's law).
		log "c$LOW_CONCURRENCY-$round: $LOW_CONCURRENCY / $ROUND_RATE per s = $(calc '%.1f' "$LOW_CONCURRENCY * 1000 / $ROUND_RATE") ms mean wait"
	done
	stop_ceiling
	stop_server
	SERVER_PIN=()
	CLIENT_PIN=()

	local rate server_us ceiling_rate ceiling_med_us low_rate low_p50 ratio ceiling_ratio
	rate=$(median "${rates[@]}")
	server_us=$(median "${us[@]}")
	ceiling_rate=$(median "${ceiling_rates[@]}")
	ceiling_med_us=$(median "${ceiling_us[@]}")
	low_rate=$(median "${low_rates[@]}")
	low_p50=$(median "${low_p50s[@]}")
	ratio=$(calc '%.2f' "$rate / $P256_VERIFY_CORE")
	ceiling_ratio=$(calc '%.2f' "$ceiling_rate / $P256_VERIFY_CORE")
	log ""
	log "== summary (medians of $ROUNDS rounds; targets in parentheses are reported, not enforced)"
	log "rounds, ours c=$CONCURRENCY (entries/s): ${rates[*]}; us per entry: ${us[*]}; core busy: ${busy[*]}"
	log "rounds, ceiling c=$CONCURRENCY (entries/s): ${ceiling_rates[*]}; us per entry: ${ceiling_us[*]}"
	log "rounds, ours c=$LOW_CONCURRENCY (entries/s): ${low_rates[*]}; p50 ms: ${low_p50s[*]}; p99 ms: ${low_p99s[*]}; core busy: ${low_busy[*]}"
	log "core $SERVER_CPU P-256 verify/s (openssl, one process): $P256_VERIFY_CORE = $verify_us us per verify"
	log "HTTP P-256 writes/s, server alone on core $SERVER_CPU, c=$CONCURRENCY: $rate = $ratio x verify/s   (>= $TARGET_RATIO: $(meets "$ratio >= $TARGET_RATIO"))"
	log "  p50 $(median "${p50s[@]}") ms, p99 $(median "${p99s[@]}") ms; server CPU per entry $server_us us (verify / that = $(calc '%.2f' "$verify_us / $server_us")), core busy $(median "${busy[@]}")"
	log "ceiling (HTTP + validation, no log) on core $SERVER_CPU: $ceiling_rate entries/s = $ceiling_ratio x verify/s, $ceiling_med_us us per entry; ours = $(calc '%.2f' "$rate / $ceiling_rate") of it"
	log "c=$LOW_CONCURRENCY closed loop: p50 $low_p50 ms, p99 $(median "${low_p99s[@]}") ms at $low_rate entries/s ($LOW_CONCURRENCY / rate = $(calc '%.1f' "$LOW_CONCURRENCY * 1000 / $low_rate") ms), core busy $(median "${low_busy[@]}")   (p50 < $TARGET_P50_MS ms: $(meets "$low_p50 < $TARGET_P50_MS"))"
	log "load generator CPU per request on core $CLIENT_CPU: $(median "${client_us[@]}") us (median round, c=$CONCURRENCY)"
	log "pinned entries_per_s=$(calc '%.0f' "$rate") p256_verify_per_s_core$SERVER_CPU=$(calc '%.0f' "$P256_VERIFY_CORE") ratio=$ratio server_us_per_entry=$server_us ceiling_ratio=$ceiling_ratio ceiling_us_per_entry=$ceiling_med_us p50_ms_c$LOW_CONCURRENCY=$(calc '%.1f' "$low_p50") target_ratio=$TARGET_RATIO target_p50_ms_c$LOW_CONCURRENCY=$TARGET_P50_MS"
}

# ---------------------------------------------------------------------------------------------

# profile_load <name> <pid> <idle pid> <rekor-bench args...>: one pinned round on <pid> under
# `perf record`; writes $WORK/<name>.script (perf script) and sets ROUND_US as pinned_round does.
profile_load() {
	local name=$1 pid=$2 idle=$3
	shift 3
	log "\$ perf record -F $PROFILE_HZ --call-graph dwarf,16384 -p $pid -o $WORK/$name.perf (for the round)"
	perf record -q -F "$PROFILE_HZ" --call-graph dwarf,16384 -p "$pid" -o "$WORK/$name.perf" >"$WORK/$name.perf.log" 2>&1 &
	local perf_pid=$!
	sleep 0.5
	pinned_round "$name" "$pid" "$idle" "$@"
	kill -INT "$perf_pid" 2>/dev/null || true
	wait "$perf_pid" 2>/dev/null || true
	perf script -i "$WORK/$name.perf" -F comm,tid,ip,sym >"$WORK/$name.script" 2>/dev/null ||
		die "perf script failed on $WORK/$name.perf"
}

# Where the server's CPU per entry goes against the ceiling's: both pinned as in `pinned`, one
# round each under perf, then bench/profile_breakdown.py. Opt-in; needs perf and python3.
profile() {
	pinned_preflight
	command -v perf >/dev/null || die "profile mode needs perf (Debian: linux-perf)"
	command -v python3 >/dev/null || die "profile mode needs python3"
	build
	pick_ports
	local data=$WORK/data
	fresh_log "$data"
	loadavg
	start_pinned_pair "$data"
	profile_load profile-ours "$SERVER_PID" "$CEILING_PID" --http "$HTTP_URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --verify-every 100
	local ours_us=$ROUND_US
	profile_load profile-ceiling "$CEILING_PID" "$SERVER_PID" --http "$CEILING_URL" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --verify-every 0
	local ceiling_cpu_us=$ROUND_US
	stop_ceiling
	stop_server
	SERVER_PIN=()
	CLIENT_PIN=()
	loadavg
	log ""
	log "== where the CPU per entry goes (perf at $PROFILE_HZ Hz; us from /proc over each round)"
	run python3 "$ROOT/bench/profile_breakdown.py" "$WORK/profile-ours.script" "$ours_us" \
		"$WORK/profile-ceiling.script" "$ceiling_cpu_us"
}

search() {
	build
	pick_ports
	local extra=()
	read -ra extra <<<"${SEARCH_ARGS:-}"
	log "== search: $SEARCH_ENTRIES entries; load average $(cut -d' ' -f1-3 /proc/loadavg)"
	run "$BIN/rekor-bench-search" --dir "$WORK/log" --entries "$SEARCH_ENTRIES" \
		--queries "$SEARCH_QUERIES" --server-bin "$BIN/rekor-server-posix" --port "$HTTP_PORT" \
		--hostname "$HOST" "${extra[@]}" | tee "$WORK/search.out"
	log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

cd "$ROOT"
"$MODE"
