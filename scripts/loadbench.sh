#!/usr/bin/env bash
# Load harness (issue #8): tokenvend end to end vs the API server's TokenRequest directly, at
# the same concurrency, in one run. Loopback only; every phase is bounded in time.
#
#   scripts/loadbench.sh            # release build, then the run (about 2 minutes)
#
# It starts the local OIDC issuer and the Kubernetes API stand-in (one process, the
# `loadbench` example) and tokenvend (`tokenvend serve`, its own process, release build),
# pre-mints ID tokens, and drives both paths with wrk (`apt-get install wrk`):
#   1. saturation: CONNECTIONS connections for DURATION seconds, direct then end to end, then
#      the minting floor;
#   2. paced at half of the direct saturation rate, same connections: both paths and both floors;
#   3. 500 connections against tokenvend (peak RSS);
#   4. 1,000 concurrent requests whose tokens carry one unknown `kid` (JWKS fetches);
#   5. replay protection on: tokenvend with its in-process store, then with a local
#      redis-server (`store:`), each its own process, at CONNECTIONS connections, saturating
#      then paced at the half rate above (every token exchanged once: distinct sets);
#   6. revocable tokens: tokenvend with the policy as it is, then with `revocable: true`
#      (a binding Secret created before each TokenRequest), each its own process, saturating
#      then paced at the half rate above, on the cycled token set.
# tokenvend's CPU time comes from /proc/PID/stat (utime + stime) around each measured window.
# The floors (`loadbench floor`: tokenvend's server loop and a bare axum route answering with
# a fixed body, or minting through tokenvend's own kube minter) run on tokenvend's CPU and are
# measured the same way: what it costs this machine to serve a request at all, and to serve one
# with a TokenRequest behind it. tokenvend's own work is what it costs beyond the latter.
#
# Knobs (environment): CONNECTIONS (32), DURATION (15), TOKENS (2000), REPLAY_DURATION (5: also
# the revocable phases) and
# REPLAY_TOKENS (6000 per set: more than a replay phase can exchange), PIN (1: the stand-in on
# CPU 1, tokenvend, wrk and redis-server on CPU 0, as if the API server ran on a machine of its
# own: it is what saturates; 0: no pinning),
# RESULTS (file for the summary; default: the run directory), TOKENVEND_BIN (another tokenvend
# binary to measure, e.g. an older build, instead of this tree's release build).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-15}
TOKENS=${TOKENS:-2000}
PIN=${PIN:-1}
WIDE_CONNECTIONS=500
BURST=1000
REPLAY_DURATION=${REPLAY_DURATION:-5}
REPLAY_TOKENS=${REPLAY_TOKENS:-6000}

command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found (.ci/ensure-redis)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== build (release)" >&2
cargo build --release --locked --quiet --bin tokenvend --example loadbench
target=${CARGO_TARGET_DIR:-target}/release
run=$(mktemp -d "${TMPDIR:-/tmp}/loadbench.XXXXXX")
RESULTS=${RESULTS:-$run/results.txt}

if [[ $PIN == 1 && $(nproc) -ge 2 ]]; then
    on_standin=(taskset -c 1)
    on_service=(taskset -c 0)
else
    on_standin=()
    on_service=()
fi

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== issuer and API stand-in (pre-minting $TOKENS ID tokens)" >&2
"${on_standin[@]}" "$target/examples/loadbench" env "$run" --tokens "$TOKENS" \
    --unknown-kid-tokens "$BURST" --replay-tokens "$REPLAY_TOKENS" --max-seconds 900 \
    2>"$run/standin.log" &
pids+=($!)
for _ in $(seq 600); do [[ -e $run/ready ]] && break; sleep 0.1; done
[[ -e $run/ready ]] || { echo "the stand-in did not start; see $run/standin.log" >&2; exit 1; }
# shellcheck source=/dev/null
source "$run/env.sh"

echo "== tokenvend serve" >&2
# Every connection comes from 127.0.0.1, as through one proxy: the per-peer cap would refuse
# all but 64 of the wide phase's 500 connections, so it is off here.
KUBECONFIG=$run/kubeconfig "${on_service[@]}" "${TOKENVEND_BIN:-$target/tokenvend}" serve \
    --config "$run/config.yaml" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --max-connections-per-peer 0 --log-format json >"$run/audit.log" 2>"$run/tokenvend.log" &
TOKENVEND_PID=$!
pids+=("$TOKENVEND_PID")
started=$SECONDS
for _ in $(seq 300); do grep -q '"tokenvend serving"' "$run/tokenvend.log" 2>/dev/null && break; sleep 0.1; done
PUBLIC=$(grep -o '"public":"[^"]*"' "$run/tokenvend.log" | head -1 | cut -d'"' -f4)
ADMIN=$(grep -o '"admin":"[^"]*"' "$run/tokenvend.log" | head -1 | cut -d'"' -f4)
[[ -n $PUBLIC ]] || { echo "tokenvend did not start; see $run/tokenvend.log" >&2; exit 1; }
curl -sf "http://$PUBLIC/readyz" >/dev/null || { echo "tokenvend is not ready" >&2; exit 1; }

echo "== floors: the serving stack alone, with and without a TokenRequest" >&2
"${on_service[@]}" "$target/examples/loadbench" floor "$run" --max-seconds 900 2>"$run/floor.log" &
FLOOR_PID=$!
pids+=("$FLOOR_PID")
"${on_service[@]}" "$target/examples/loadbench" floor "$run" --mint --max-seconds 900 2>"$run/floor-mint.log" &
FLOOR_MINT_PID=$!
pids+=("$FLOOR_MINT_PID")
for _ in $(seq 300); do [[ -s $run/floor.addr && -s $run/floor-mint.addr ]] && break; sleep 0.1; done
[[ -s $run/floor.addr && -s $run/floor-mint.addr ]] || { echo "the floors did not start" >&2; exit 1; }
FLOOR_URL="http://$(cat "$run/floor.addr")/"
FLOOR_MINT_URL="http://$(cat "$run/floor-mint.addr")/"

TOKENVEND_URL="http://$PUBLIC/v1/token"
DIRECT_URL="$APISERVER_URL$TOKEN_REQUEST_PATH"
CLK_TCK=$(getconf CLK_TCK)

# utime + stime of a process, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# A field of /proc/PID/status in kB.
status_kb() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }
# A counter from tokenvend's metrics, summed over the lines matching $1.
metric() { curl -sf "http://$ADMIN/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }

# wrk NAME URL CONNECTIONS SECONDS [VAR=VALUE...]: runs wrk, and sets NAME_rps, NAME_p50_ms,
# NAME_p99_ms, NAME_requests, NAME_failed (non-2xx plus socket errors).
wrk_run() {
    local name=$1 url=$2 connections=$3 seconds=$4
    shift 4
    env "$@" "${on_service[@]}" wrk -t 1 -c "$connections" -d "${seconds}s" --timeout 20s \
        -s scripts/loadbench.lua "$url" >"$run/$name.wrk" 2>&1
    local result
    result=$(grep '^RESULT' "$run/$name.wrk") || { cat "$run/$name.wrk" >&2; exit 1; }
    eval "$(awk -v n="$name" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s_requests=%d\n%s_failed=%d\n", n, v["requests"], n, v["non2xx"] + v["socket_errors"]
        printf "%s_rps=%.0f\n", n, v["requests"] / (v["duration_us"] / 1e6)
        printf "%s_p50_ms=%.2f\n%s_p99_ms=%.2f\n", n, v["p50_us"] / 1e3, n, v["p99_us"] / 1e3
    }' <<<"$result")"
}

direct=(TOKENS= BODY_FILE="$run/token-request.json" BEARER="$SERVICE_TOKEN")
service=(TOKENS="$run/tokens.txt" BODY_FILE= BEARER=)
floor=(TOKENS="$run/tokens.txt" BODY_FILE= BEARER=)

# measured NAME URL PID SECONDS VAR=VALUE...: wrk_run, plus NAME_ticks, the CPU ticks PID used.
measured() {
    local name=$1 url=$2 pid=$3 seconds=$4
    shift 4
    local before
    before=$(cpu_ticks "$pid")
    wrk_run "$name" "$url" "$CONNECTIONS" "$seconds" "$@"
    eval "${name}_ticks=$(( $(cpu_ticks "$pid") - before ))"
}

echo "== warm-up (connections, pools)" >&2
wrk_run warm_direct "$DIRECT_URL" "$CONNECTIONS" 3 "${direct[@]}"
wrk_run warm_service "$TOKENVEND_URL" "$CONNECTIONS" 3 "${service[@]}"
wrk_run warm_floor_mint "$FLOOR_MINT_URL" "$CONNECTIONS" 3 "${floor[@]}"

echo "== saturation: $CONNECTIONS connections, ${DURATION}s each" >&2
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
measured sat_direct "$DIRECT_URL" "$STANDIN_PID" "$DURATION" "${direct[@]}"
issued_before=$(metric 'tokenvend_tokens_issued_total')
measured sat_service "$TOKENVEND_URL" "$TOKENVEND_PID" "$DURATION" "${service[@]}"
sat_issued=$(( $(metric 'tokenvend_tokens_issued_total') - issued_before ))
measured sat_floor_mint "$FLOOR_MINT_URL" "$FLOOR_MINT_PID" "$DURATION" "${floor[@]}"

half_rate=$(( sat_direct_rps / 2 ))
# Each connection pauses between requests so that all of them together ask for about
# half_rate/s: a cycle of C/half_rate seconds, less about two service times of latency.
delay_ms=$(awk -v c="$CONNECTIONS" -v r="$half_rate" -v s="$sat_direct_rps" \
    'BEGIN { d = c * 1000 / r - 2 * 1000 / s; print (d < 1 ? 1 : d) }')
echo "== paced: about $half_rate/s (half of direct saturation), ${DURATION}s each" >&2
wrk_run half_direct "$DIRECT_URL" "$CONNECTIONS" "$DURATION" "${direct[@]}" DELAY_MS="$delay_ms"
issued_before=$(metric 'tokenvend_tokens_issued_total')
measured half_service "$TOKENVEND_URL" "$TOKENVEND_PID" "$DURATION" "${service[@]}" DELAY_MS="$delay_ms"
half_issued=$(( $(metric 'tokenvend_tokens_issued_total') - issued_before ))
measured half_floor_mint "$FLOOR_MINT_URL" "$FLOOR_MINT_PID" "$DURATION" "${floor[@]}" DELAY_MS="$delay_ms"
measured half_floor "$FLOOR_URL" "$FLOOR_PID" "$DURATION" "${floor[@]}" DELAY_MS="$delay_ms"

echo "== $WIDE_CONNECTIONS connections against tokenvend, 10s" >&2
rss_before_kb=$(status_kb "$TOKENVEND_PID" VmRSS)
wrk_run wide_service "$TOKENVEND_URL" "$WIDE_CONNECTIONS" 10 "${service[@]}"
hwm_kb=$(status_kb "$TOKENVEND_PID" VmHWM)

echo "== $BURST concurrent requests with one unknown kid" >&2
# The startup key fetch starts the refresh cooldown (30 s); wait it out so that the unknown
# kid is allowed to trigger a fetch at all.
while (( SECONDS - started < 32 )); do sleep 1; done
fetches_before=$(metric 'tokenvend_jwks_fetches_total')
burst_statuses=$("${on_service[@]}" "$target/examples/loadbench" burst "$TOKENVEND_URL" "$run/unknown-kid-tokens.txt")
burst_fetches=$(( $(metric 'tokenvend_jwks_fetches_total') - fetches_before ))

echo "== replay protection: in-process store, then redis-server; ${REPLAY_DURATION}s per phase" >&2
REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# On tokenvend's CPU: the stand-in's CPU is the one that saturates (as the API server would).
"${on_service[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$run" >"$run/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
awk -v url="redis://127.0.0.1:$REDIS_PORT/0" \
    '/^issuers:/ { print "store:\n  url: " url } { print }' "$run/config-replay.yaml" \
    >"$run/config-replay-store.yaml"
# own_phase NAME CONFIG SATURATION_TOKENS HALF_TOKENS: its own tokenvend on CONFIG, warmed up
# with the shared token set, then saturation and the paced half rate, on the token sets given.
own_phase() {
    local name=$1 config=$2 saturation_tokens=$3 half_tokens=$4
    KUBECONFIG=$run/kubeconfig "${on_service[@]}" "${TOKENVEND_BIN:-$target/tokenvend}" serve \
        --config "$config" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --max-connections-per-peer 0 --log-format json >/dev/null 2>"$run/$name.log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 300); do grep -q '"tokenvend serving"' "$run/$name.log" 2>/dev/null && break; sleep 0.1; done
    local public
    public=$(grep -o '"public":"[^"]*"' "$run/$name.log" | head -1 | cut -d'"' -f4)
    [[ -n $public ]] || { echo "tokenvend ($name) did not start; see $run/$name.log" >&2; exit 1; }
    wrk_run "${name}_warm" "http://$public/v1/token" "$CONNECTIONS" 2 "${service[@]}"
    measured "${name}_sat" "http://$public/v1/token" "$pid" "$REPLAY_DURATION" \
        TOKENS="$saturation_tokens" BODY_FILE= BEARER=
    measured "${name}_half" "http://$public/v1/token" "$pid" "$REPLAY_DURATION" \
        TOKENS="$half_tokens" BODY_FILE= BEARER= DELAY_MS="$delay_ms"
    local metrics
    metrics=$(curl -sf "http://$(grep -o '"admin":"[^"]*"' "$run/$name.log" | head -1 | cut -d'"' -f4)/metrics")
    eval "${name}_store_ops=$(awk 'index($0, "tokenvend_store_operations_total{") == 1 && /result="ok"/ {s += $NF} END {print s + 0}' <<<"$metrics")"
    eval "${name}_issued=$(awk 'index($0, "tokenvend_tokens_issued_total{") == 1 {s += $NF} END {print s + 0}' <<<"$metrics")"
    eval "${name}_bindings=$(awk 'index($0, "tokenvend_kube_binding_requests_total{call=\"create_secret\",code=\"success\"}") == 1 {s += $NF} END {print s + 0}' <<<"$metrics")"
    kill "$pid"
}
own_phase replay_local "$run/config-replay.yaml" "$run/replay-tokens-saturation.txt" "$run/replay-tokens-half.txt"
own_phase replay_redis "$run/config-replay-store.yaml" "$run/replay-tokens-saturation.txt" "$run/replay-tokens-half.txt"
replay_records=$(redis-cli -p "$REDIS_PORT" dbsize)
replay_memory=$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')

echo "== revocable tokens: the policy as it is, then revocable; ${REPLAY_DURATION}s per phase" >&2
own_phase plain "$run/config.yaml" "$run/tokens.txt" "$run/tokens.txt"
own_phase revocable "$run/config-revocable.yaml" "$run/tokens.txt" "$run/tokens.txt"

per_issuance() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.0f", n ? t * 1e6 / hz / n : 0 }'; }
{
    echo "tokenvend load run, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average before: $loadavg"
    echo "pinning: $([[ ${#on_service[@]} -gt 0 ]] && echo 'stand-in on CPU 1; tokenvend, wrk (and redis-server) on CPU 0' || echo none)"
    echo "concurrency: $CONNECTIONS connections, ${DURATION}s per phase, $TOKENS distinct RS256 ID tokens cycled (replay protection off)"
    echo
    printf '%-36s %12s %12s\n' "" "direct" "tokenvend"
    printf '%-36s %12s %12s\n' "saturation: issuances/s" "$sat_direct_rps" "$sat_service_rps"
    printf '%-36s %12s %12s\n' "saturation: p50 / p99 ms" "$sat_direct_p50_ms / $sat_direct_p99_ms" "$sat_service_p50_ms / $sat_service_p99_ms"
    printf '%-36s %12s %12s\n' "half rate: issuances/s" "$half_direct_rps" "$half_service_rps"
    printf '%-36s %12s %12s\n' "half rate: p50 / p99 ms" "$half_direct_p50_ms / $half_direct_p99_ms" "$half_service_p50_ms / $half_service_p99_ms"
    printf '%-36s %12s %12s\n' "failed requests (all phases above)" \
        "$(( sat_direct_failed + half_direct_failed ))" "$(( sat_service_failed + half_service_failed ))"
    echo
    awk -v a="$sat_service_rps" -v b="$sat_direct_rps" 'BEGIN { printf "throughput ratio (tokenvend / direct, saturation): %.1f%%\n", 100 * a / b }'
    awk -v a="$half_service_p99_ms" -v b="$half_direct_p99_ms" 'BEGIN { printf "p99 added at half rate: %.2f ms\n", a - b }'
    echo "tokenvend CPU per issuance: $(per_issuance "$sat_service_ticks" "$sat_issued") µs at saturation ($sat_issued issued), $(per_issuance "$half_service_ticks" "$half_issued") µs at half rate ($half_issued issued)"
    echo "stand-in CPU per direct TokenRequest: $(per_issuance "$sat_direct_ticks" "$sat_direct_requests") µs"
    echo "floor, the serving stack alone (CPU per request, its own process on tokenvend's CPU):"
    echo "  with a TokenRequest per request: $(per_issuance "$sat_floor_mint_ticks" "$sat_floor_mint_requests") µs at saturation ($sat_floor_mint_rps/s), $(per_issuance "$half_floor_mint_ticks" "$half_floor_mint_requests") µs at half rate ($half_floor_mint_rps/s)"
    echo "  with a fixed answer:             $(per_issuance "$half_floor_ticks" "$half_floor_requests") µs at half rate ($half_floor_rps/s)"
    echo "tokenvend RSS: $(( rss_before_kb / 1024 )) MiB before, peak (VmHWM) $(( hwm_kb / 1024 )) MiB after $WIDE_CONNECTIONS connections ($wide_service_rps/s, p99 $wide_service_p99_ms ms, $wide_service_failed failed)"
    echo "$BURST concurrent requests, one unknown kid: $burst_statuses; JWKS fetches: $burst_fetches"
    echo
    echo "replay protection on, $CONNECTIONS connections, ${REPLAY_DURATION}s per phase:"
    printf '%-36s %12s %12s\n' "" "in-process" "redis"
    printf '%-36s %12s %12s\n' "saturation: issuances/s" "$replay_local_sat_rps" "$replay_redis_sat_rps"
    printf '%-36s %12s %12s\n' "saturation: p50 / p99 ms" "$replay_local_sat_p50_ms / $replay_local_sat_p99_ms" "$replay_redis_sat_p50_ms / $replay_redis_sat_p99_ms"
    printf '%-36s %12s %12s\n' "half rate: issuances/s" "$replay_local_half_rps" "$replay_redis_half_rps"
    printf '%-36s %12s %12s\n' "half rate: p50 / p99 ms" "$replay_local_half_p50_ms / $replay_local_half_p99_ms" "$replay_redis_half_p50_ms / $replay_redis_half_p99_ms"
    printf '%-36s %12s %12s\n' "failed requests" "$(( replay_local_sat_failed + replay_local_half_failed ))" "$(( replay_redis_sat_failed + replay_redis_half_failed ))"
    awk -v a="$replay_redis_sat_rps" -v b="$replay_local_sat_rps" 'BEGIN { printf "throughput ratio (redis / in-process, saturation): %.1f%%\n", 100 * a / b }'
    awk -v a="$replay_redis_half_p50_ms" -v b="$replay_local_half_p50_ms" -v c="$replay_redis_sat_p50_ms" -v d="$replay_local_sat_p50_ms" \
        'BEGIN { printf "p50 added by redis: %.2f ms at half rate, %.2f ms at saturation\n", a - b, c - d }'
    echo "tokenvend CPU per issuance: $(per_issuance "$replay_local_sat_ticks" "$replay_local_sat_requests") µs in-process, $(per_issuance "$replay_redis_sat_ticks" "$replay_redis_sat_requests") µs with redis (saturation)"
    echo "redis: $replay_redis_store_ops store operations answered; $replay_records keys, used_memory $replay_memory bytes after the run"
    echo
    echo "revocable tokens (a binding Secret per token), $CONNECTIONS connections, ${REPLAY_DURATION}s per phase:"
    printf '%-36s %12s %12s\n' "" "plain" "revocable"
    printf '%-36s %12s %12s\n' "saturation: issuances/s" "$plain_sat_rps" "$revocable_sat_rps"
    printf '%-36s %12s %12s\n' "saturation: p50 / p99 ms" "$plain_sat_p50_ms / $plain_sat_p99_ms" "$revocable_sat_p50_ms / $revocable_sat_p99_ms"
    printf '%-36s %12s %12s\n' "half rate: issuances/s" "$plain_half_rps" "$revocable_half_rps"
    printf '%-36s %12s %12s\n' "half rate: p50 / p99 ms" "$plain_half_p50_ms / $plain_half_p99_ms" "$revocable_half_p50_ms / $revocable_half_p99_ms"
    printf '%-36s %12s %12s\n' "failed requests" "$(( plain_sat_failed + plain_half_failed ))" "$(( revocable_sat_failed + revocable_half_failed ))"
    printf '%-36s %12s %12s\n' "binding Secrets created / issued" "$plain_bindings / $plain_issued" "$revocable_bindings / $revocable_issued"
    awk -v a="$revocable_sat_rps" -v b="$plain_sat_rps" 'BEGIN { printf "throughput ratio (revocable / plain, saturation): %.1f%%\n", 100 * a / b }'
    awk -v a="$revocable_half_p50_ms" -v b="$plain_half_p50_ms" 'BEGIN { printf "p50 added by the binding at half rate: %.2f ms\n", a - b }'
    echo "tokenvend CPU per issuance: $(per_issuance "$plain_sat_ticks" "$plain_sat_requests") µs plain, $(per_issuance "$revocable_sat_ticks" "$revocable_sat_requests") µs revocable (saturation)"
} | tee "$RESULTS"
echo "(run directory: $run)" >&2
failed=$(( sat_direct_failed + half_direct_failed + sat_service_failed + half_service_failed + wide_service_failed
    + sat_floor_mint_failed + half_floor_mint_failed + half_floor_failed
    + replay_local_sat_failed + replay_local_half_failed + replay_redis_sat_failed + replay_redis_half_failed
    + plain_sat_failed + plain_half_failed + revocable_sat_failed + revocable_half_failed ))
if (( failed > 0 )); then
    echo "loadbench: $failed requests failed; the figures above do not measure issuance (see $run)" >&2
    exit 1
fi
