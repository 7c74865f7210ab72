#!/usr/bin/env bash
# Checks the deploy files against the real tools, as CI does (`bash deploy/check.sh`, after
# `npm run build`):
#   - systemd-analyze verify on the unit; any warning fails the check;
#   - nginx -t on the site, with a self-signed certificate made for this run;
#   - the site in a real nginx in front of a real coordinator: TLS, a provider's WebSocket
#     handshake through the proxy, the operator paths refused to other addresses, the body limit,
#     and no query string in the access log.
# Ports 18443 (nginx) and 18481 (coordinator) on 127.0.0.1 must be free.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/sbin:/sbin"
work=$(mktemp -d)
coord_pid=""
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -n "$coord_pid" ] && kill -TERM "$coord_pid" 2>/dev/null && wait "$coord_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "deploy check failed: $*" >&2; exit 1; }

echo "-- systemd-analyze verify deploy/systemd/poolcoord.service"
out=$(systemd-analyze verify deploy/systemd/poolcoord.service 2>&1) || fail "systemd-analyze: $out"
[ -z "$out" ] || fail "systemd-analyze warned: $out"
systemd-analyze security --offline=true deploy/systemd/poolcoord.service 2>/dev/null | tail -n 1 || true

echo "-- nginx -t on deploy/nginx/poolcoord.conf"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=coordinator.example.com" \
  -addext "subjectAltName=DNS:coordinator.example.com" \
  -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null
# The site as shipped, with only its certificate paths, ports, log paths and upstream moved
# into this run's sandbox.
sed -e "s#/etc/letsencrypt/live/coordinator.example.com/#$work/#" \
    -e "s#/var/log/nginx/#$work/#" \
    -e "s#listen 443 ssl http2;#listen 127.0.0.1:18443 ssl http2;#" \
    -e "/listen \[::\]/d" \
    -e "s#listen 80;#listen 127.0.0.1:18480;#" \
    -e "s#server 127.0.0.1:8080;#server 127.0.0.1:18481;#" \
    deploy/nginx/poolcoord.conf >"$work/site.conf"
cat >"$work/nginx.conf" <<EOF
pid $work/nginx.pid;
error_log $work/error.log warn;
worker_processes 1;
events { worker_connections 256; }
http {
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  include $work/site.conf;
}
EOF
nginx -t -q -p "$work" -c "$work/nginx.conf" || fail "nginx -t"
echo "nginx -t: ok"

echo "-- the site in front of a running coordinator"
key="deploy-check-operator-key-0123456789"
COORD_DATA_DIR="$work/data" COORD_PORT=18481 COORD_TRUST_PROXY=true COORD_OPERATOR_KEY="$key" \
  node packages/coordinator/dist/bin.js >"$work/coordinator.log" 2>&1 &
coord_pid=$!
nginx -p "$work" -c "$work/nginx.conf"
base="https://coordinator.example.com:18443"
curl_() { curl -sS -o /dev/null -w '%{http_code}' --resolve coordinator.example.com:18443:127.0.0.1 \
  --cacert "$work/fullchain.pem" "$@"; }
for _ in $(seq 1 60); do
  [ "$(curl_ "$base/healthz" || true)" = 200 ] && break
  sleep 0.5
done
expect() { # expect <status> <what> curl-args…
  local want=$1 what=$2; shift 2
  local got; got=$(curl_ "$@")
  [ "$got" = "$want" ] || { cat "$work/coordinator.log" "$work/error.log" >&2; fail "$what: HTTP $got, want $want"; }
  echo "$what: $got"
}
expect 200 "healthz over TLS" "$base/healthz"
expect 200 "/poolz from loopback with the key" -H "Authorization: Bearer $key" "$base/poolz"
expect 401 "/poolz from loopback without the key" "$base/poolz"
expect 403 "/poolz from another address" --interface 127.0.0.2 -H "Authorization: Bearer $key" "$base/poolz"
expect 403 "/metrics from another address" --interface 127.0.0.2 "$base/metrics"
expect 403 "/admin from another address" --interface 127.0.0.2 -X POST "$base/admin/providers/x/kick"
expect 403 "/dashboard from another address" --interface 127.0.0.2 "$base/dashboard"
expect 200 "/dashboard from loopback" "$base/dashboard"
expect 200 "/openapi.json from another address" --interface 127.0.0.2 "$base/openapi.json"
expect 404 "an unknown path" "$base/nope"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$work/big"
expect 413 "a body over 1 MiB" -H 'content-type: application/json' --data-binary "@$work/big" "$base/v1/chat/completions"
expect 301 "plain HTTP redirects" "http://127.0.0.1:18480/v1/models"

# A provider's handshake through the proxy: upgrade, hello, hello_ack with a minted token.
NODE_EXTRA_CA_CERTS="$work/fullchain.pem" node --input-type=module -e '
import WebSocket from "ws"
const tls = { servername: "coordinator.example.com" }
const ws = new WebSocket("wss://127.0.0.1:18443/ws/provider?token=" + "ab".repeat(32), tls)
const timer = setTimeout(() => { console.error("no answer within 10 s"); process.exit(1) }, 10000)
let status = 0
ws.on("unexpected-response", (_req, res) => { status = res.statusCode; res.resume(); ws.terminate() })
ws.on("close", () => {
  clearTimeout(timer)
  if (status !== 400) { console.error("query token: HTTP", status, "want 400 from nginx"); process.exit(1) }
  console.log("query-string token: refused by nginx with 400, never proxied")
  const p = new WebSocket("wss://127.0.0.1:18443/ws/provider", tls)
  p.on("open", () => p.send(JSON.stringify({ type: "hello", version: 1, provider_id: "deploy-check",
    hostname: "ci", model_id: "m", binary_version: "check", max_concurrency: 1, max_context_tokens: 4096 })))
  p.on("message", (m) => {
    const ack = JSON.parse(String(m))
    if (ack.type !== "hello_ack" || ack.auth_state !== "self_minted") { console.error("unexpected", ack.type); process.exit(1) }
    console.log("provider handshake through the proxy: hello_ack", ack.auth_state)
    p.close(1000)
    perAddressLimit().then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1) })
  })
  p.on("error", (e) => { console.error(e.message); process.exit(1) })
})
ws.on("error", (e) => { if (status === 0) { console.error(e.message); process.exit(1) } })

// The coordinator allows 8 unadmitted sockets per client address. Through the proxy, that must
// be the address nginx saw (X-Real-IP), not nginx itself: a 9th from one address is refused
// while another address still gets in.
function pending(from) {
  return new Promise((resolve, reject) => {
    const s = new WebSocket("wss://127.0.0.1:18443/ws/provider", { ...tls, localAddress: from })
    s.on("open", () => resolve({ s, status: 101 }))
    s.on("unexpected-response", (_req, res) => { resolve({ s, status: res.statusCode }); res.resume() })
    s.on("error", reject)
  })
}
async function perAddressLimit() {
  const held = []
  for (let i = 0; i < 8; i++) {
    const r = await pending("127.0.0.2"); held.push(r.s)
    if (r.status !== 101) throw new Error(`pending socket ${i + 1} from 127.0.0.2: HTTP ${r.status}`)
  }
  const ninth = await pending("127.0.0.2")
  const other = await pending("127.0.0.3")
  for (const s of [...held, ninth.s, other.s]) s.terminate()
  if (ninth.status !== 429) throw new Error(`9th pending socket from 127.0.0.2: HTTP ${ninth.status}, want 429`)
  if (other.status !== 101) throw new Error(`a socket from 127.0.0.3: HTTP ${other.status}, want 101 (X-Real-IP lost?)`)
  console.log("per-address upgrade limit sees the client address through the proxy: 9th 429, other address 101")
}
' || fail "WebSocket through the proxy"

grep -q "/ws/provider" "$work/poolcoord.access.log" || fail "the access log has no upgrade line"
for log in "$work/poolcoord.access.log" "$work/poolcoord.error.log" "$work/error.log"; do
  [ -f "$log" ] || continue
  grep -q "abababab" "$log" && fail "$(basename "$log") kept the token from a query string"
done
echo "access and error logs: no token"
echo "deploy check: ok"
