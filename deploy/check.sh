#!/usr/bin/env bash
# Checks the deploy files against the real tools, as CI does (`bash deploy/check.sh`, after
# `npm run build`):
#   - systemd-analyze verify on the unit; any warning fails the check;
#   - nginx -t on the site, with a self-signed certificate made for this run;
#   - the site in a real nginx in front of a real coordinator: TLS, a provider's WebSocket
#     handshake through the proxy (v1, and identity v2 with the public origin), the operator paths
#     refused to other addresses, the body limit, and no query string in the access log;
#   - several upstream nodes: the site with a dead node first in its upstream, and the compose
#     load balancer (deploy/nginx/compose-lb) with a draining node first; requests and provider
#     handshakes still reach the coordinator.
# Ports 18443, 18480 (nginx), 18481 (coordinator), 18483 (load balancer) and 18484 (a stand-in
# draining node) on 127.0.0.1 must be free, and nothing may listen on 18482 (the dead node).
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
nginx_conf() { # nginx_conf <out> <site>…: a main config for this sandbox, including the sites
  local out=$1 site
  shift
  {
    echo "pid $work/nginx.pid;"
    echo "error_log $work/error.log warn;"
    echo "worker_processes 1;"
    echo "events { worker_connections 256; }"
    echo "http {"
    echo "  client_body_temp_path $work/body;"
    echo "  proxy_temp_path $work/proxy;"
    for site in "$@"; do echo "  include $site;"; done
    echo "}"
  } >"$out"
}
nginx_conf "$work/nginx.conf" "$work/site.conf"
nginx -t -q -p "$work" -c "$work/nginx.conf" || fail "nginx -t"
echo "nginx -t: ok"

echo "-- the site in front of a running coordinator"
key="deploy-check-operator-key-0123456789"
# COORD_PUBLIC_ORIGIN: the origin a provider dialling the site signs (identity v2).
COORD_DATA_DIR="$work/data" COORD_PORT=18481 COORD_TRUST_PROXY=true COORD_OPERATOR_KEY="$key" \
  COORD_PUBLIC_ORIGIN=wss://coordinator.example.com:18443 \
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
import { SUBPROTOCOL_V2, authInit, authProof, encode, generateIdentityKey, provedBytes, sha256Hex, signProof } from "./packages/protocol/dist/index.js"
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
    keyHandshake().then(perAddressLimit).then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1) })
  })
  p.on("error", (e) => { console.error(e.message); process.exit(1) })
})
ws.on("error", (e) => { if (status === 0) { console.error(e.message); process.exit(1) } })

// Identity v2 through the proxy: nginx passes the subprotocol both ways, and the challenge names
// the public origin (COORD_PUBLIC_ORIGIN), not the loopback listener behind nginx.
function keyHandshake() {
  return new Promise((resolve, reject) => {
    const key = generateIdentityKey()
    const fields = { provider_id: "deploy-check-v2", hostname: "ci", model_id: "m", binary_version: "check", max_concurrency: 1, max_context_tokens: 4096 }
    const init = encode(authInit(fields, { identity_key: key.publicKey, intent: "enroll" }))
    const s = new WebSocket("wss://127.0.0.1:18443/ws/provider", [SUBPROTOCOL_V2], tls)
    s.on("open", () => {
      if (s.protocol !== SUBPROTOCOL_V2) return reject(new Error(`subprotocol through the proxy: "${s.protocol}", want ${SUBPROTOCOL_V2}`))
      s.send(init)
    })
    s.on("message", (m) => {
      const msg = JSON.parse(String(m))
      if (msg.type === "auth_challenge") {
        if (msg.origin !== "wss://coordinator.example.com:18443") return reject(new Error(`challenge origin ${msg.origin}, want the public origin`))
        const bytes = provedBytes({ origin: msg.origin, intent: "enroll", providerId: fields.provider_id, identityKey: key.publicKey, nextIdentityKey: null,
          challengeId: msg.challenge_id, nonce: msg.nonce, issuedAt: msg.issued_at, initSha256: sha256Hex(init) })
        return s.send(encode(authProof(msg.challenge_id, signProof(key, bytes))))
      }
      if (msg.type !== "hello_ack" || msg.auth_state !== "key_proven") return reject(new Error(`unexpected ${msg.type} ${msg.auth_state}`))
      console.log("identity-v2 handshake through the proxy: poolcoord.v2 selected, public origin signed, hello_ack key_proven")
      s.close(1000)
      resolve()
    })
    s.on("close", (code) => reject(new Error(`identity-v2 handshake closed ${code}`)))
    s.on("error", reject)
  })
}

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

echo "-- several upstream nodes"
# The site as above with two nodes in its upstream, the first one dead: nothing listens on 18482.
if (exec 3<>/dev/tcp/127.0.0.1/18482) 2>/dev/null; then fail "something listens on 127.0.0.1:18482, the dead node's port"; fi
sed -e "s#server 127.0.0.1:18481;#server 127.0.0.1:18482 max_fails=1 fail_timeout=10s;\n    server 127.0.0.1:18481 max_fails=1 fail_timeout=10s;#" \
  "$work/site.conf" >"$work/site-cluster.conf"
grep -q "server 127.0.0.1:18482 " "$work/site-cluster.conf" || fail "no upstream line to turn into two nodes"
# The compose load balancer, its two nodes moved to a stand-in draining node (18484) and the
# running coordinator. Debian's nginx 1.22 predates `resolve` in an upstream, and Docker's DNS is
# not here, so both go.
sed -e 's#server coord-1:8080 \(.*\) resolve;#server 127.0.0.1:18484 \1;#' \
    -e 's#server coord-2:8080 \(.*\) resolve;#server 127.0.0.1:18481 \1;#' \
    -e '/^ *resolver /d' \
    -e 's#listen 8080;#listen 127.0.0.1:18483;#' \
    -e "s#/var/log/nginx/#$work/lb-#" \
    deploy/nginx/compose-lb/poolcoord-lb.conf >"$work/lb.conf"
if ! grep -q "server 127.0.0.1:18484 " "$work/lb.conf" || grep -q "coord-[12]:\| resolve;\|^ *resolver " "$work/lb.conf"; then
  fail "deploy/nginx/compose-lb/poolcoord-lb.conf no longer has the upstream lines this check rewrites"
fi
nginx_conf "$work/nginx-cluster.conf" "$work/site-cluster.conf" "$work/lb.conf"
nginx -t -q -p "$work" -c "$work/nginx-cluster.conf" || fail "nginx -t with two upstream nodes"
echo "nginx -t, the site and the load balancer with two upstream nodes: ok"
# A fresh nginx: no node may start out marked failed by the requests above.
kill -QUIT "$(cat "$work/nginx.pid")"
for _ in $(seq 1 50); do
  [ -f "$work/nginx.pid" ] || break
  sleep 0.1
done
[ ! -f "$work/nginx.pid" ] || fail "nginx did not stop"
nginx -p "$work" -c "$work/nginx-cluster.conf"
# Round robin starts with the first node, so the first request meets the dead one.
for i in 1 2 3; do expect 200 "healthz through the site, first node dead ($i)" "$base/healthz"; done
# Tried by the first request only: max_fails=1 then keeps it out for fail_timeout.
tries=$(grep -c "Connection refused) while connecting to upstream.*127.0.0.1:18482" "$work/poolcoord.error.log" || true)
[ "$tries" = 1 ] || fail "the dead node was tried $tries times, want 1 (0: the requests above proved nothing)"
echo "the dead node was tried once, then skipped for its fail_timeout"

NODE_EXTRA_CA_CERTS="$work/fullchain.pem" node --input-type=module -e '
import http from "node:http"
import WebSocket from "ws"
const timer = setTimeout(() => { console.error("no answer within 10 s"); process.exit(1) }, 10000)
// What a draining coordinator does to an upgrade: 503.
let refused = 0
const draining = http.createServer((_req, res) => res.writeHead(503).end())
draining.on("upgrade", (_req, socket) => { refused++; socket.end("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n") })
await new Promise((resolve) => draining.listen(18484, "127.0.0.1", resolve))
function handshake(url, id, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = new WebSocket(url, opts)
    p.on("open", () => p.send(JSON.stringify({ type: "hello", version: 1, provider_id: id,
      hostname: "ci", model_id: "m", binary_version: "check", max_concurrency: 1, max_context_tokens: 4096 })))
    p.on("message", (m) => { p.close(1000); resolve(JSON.parse(String(m)).type) })
    p.on("unexpected-response", (_req, res) => reject(new Error(`${id}: HTTP ${res.statusCode}`)))
    p.on("error", reject)
  })
}
try {
  const site = await handshake("wss://127.0.0.1:18443/ws/provider", "deploy-check-site", { servername: "coordinator.example.com" })
  if (site !== "hello_ack") throw new Error(`through the site: ${site}`)
  console.log("provider handshake through the site, two upstream nodes: hello_ack")
  for (const id of ["deploy-check-lb-1", "deploy-check-lb-2"]) {
    const got = await handshake("ws://127.0.0.1:18483/ws/provider", id)
    if (got !== "hello_ack") throw new Error(`${id} through the load balancer: ${got}`)
  }
  if (refused === 0) throw new Error("the load balancer never tried the draining node, so the handshakes proved nothing")
  console.log(`provider handshakes through the load balancer, draining node first: hello_ack twice, ${refused} upgrade refused with 503 and retried on the next node`)
  clearTimeout(timer)
  draining.close()
  process.exit(0)
} catch (e) {
  console.error(e.message)
  process.exit(1)
}
' || { cat "$work/coordinator.log" "$work/error.log" >&2; fail "WebSocket through several upstream nodes"; }
echo "deploy check: ok"
