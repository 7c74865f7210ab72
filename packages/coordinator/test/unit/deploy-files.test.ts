// The deploy files restate some of the coordinator's defaults (drain deadline, body limit,
// request deadline, port). These tests keep them in step with src/config.ts, so changing a
// default without the deploy files fails here rather than in production. The files' syntax is
// checked by the real tools in deploy/check.sh.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'
import { MIN_NATS_MAX_PAYLOAD } from '../../src/cluster/nats-link.js'
import { defaultLimits, envToConfig, parsePublicOrigin, readEnv } from '../../src/config.js'

const read = (path: string): string => readFileSync(new URL(`../../../../${path}`, import.meta.url), 'utf8')

const drainS = defaultLimits.drainTimeoutMs / 1000
const defaultPort = envToConfig({}).port

/** systemd and compose durations as used in our files: `45s`, `1m30s`, or bare seconds. */
function seconds(v: string): number {
  const m = /^(?:(\d+)m)?(?:(\d+)s?)?$/.exec(v.trim())
  if (!m || (m[1] === undefined && m[2] === undefined)) throw new Error(`not a duration: ${v}`)
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)
}

/** The values of `Key=` lines in a unit file, in order. */
function unitValues(unit: string, key: string): string[] {
  return unit
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1))
}

/** deploy/compose.env.example as a map: the values compose would fill in for `${VAR}` once copied to deploy/.env. */
function envExample(): Map<string, string> {
  const lines = read('deploy/compose.env.example').split('\n')
  return new Map(lines.filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
}

/** A compose value with `${VAR…}` filled from the env example, or with a secret of a valid shape where the example leaves it empty. */
function fillFromExample(value: string): string {
  const example = envExample()
  return value.replace(/\$\{([A-Z_]+)[^}]*\}/g, (_m, name: string) => example.get(name) || 'secret-0123456789abcdef')
}

/** The nginx location block that starts with `location <match> {`. */
function location(site: string, match: string): string {
  const start = site.indexOf(`location ${match} {`)
  if (start < 0) throw new Error(`no location ${match}`)
  return site.slice(start, site.indexOf('\n    }', start))
}

t.test('systemd unit', async (t) => {
  const unit = read('deploy/systemd/poolcoord.service')
  t.match(unit, /^Environment=.*COORD_CONFIG=\/etc\/poolcoord\/live\.yaml/m, 'live settings file')
  t.notMatch(unit, /COORD_REQUIRE_PROVIDER_TOKENS|COORD_LOG_LEVEL/, 'live settings left to the file')
  const [stop] = unitValues(unit, 'TimeoutStopSec')
  t.ok(stop, 'TimeoutStopSec is set')
  t.ok(seconds(stop!) >= drainS + 10, `TimeoutStopSec ${stop} leaves room after the ${drainS} s drain`)
  t.same(unitValues(unit, 'KillSignal'), ['SIGTERM'], 'SIGTERM starts the drain')
  t.same(unitValues(unit, 'Restart'), ['on-failure'])
  t.same(unitValues(unit, 'ProtectSystem'), ['strict'])
  t.same(unitValues(unit, 'NoNewPrivileges'), ['yes'])
  t.same(unitValues(unit, 'User'), ['poolcoord'], 'a dedicated user')
  t.same(unitValues(unit, 'EnvironmentFile'), ['/etc/poolcoord/env'], 'secrets from an env file')
  t.match(unitValues(unit, 'ExecReload')[0], /kill -HUP \$MAINPID/, 'reload is SIGHUP')
  const env = unitValues(unit, 'Environment').join(' ')
  t.match(env, /COORD_HOST=127\.0\.0\.1/, 'loopback only, behind the proxy')
  t.match(env, /COORD_TRUST_PROXY=true/, 'per-address limits use the proxy-reported address')
  // Identity-v2 agents sign the origin they dial: the nginx site's public name, not the loopback listener.
  const origin = /COORD_PUBLIC_ORIGIN=(\S+)/.exec(env)?.[1]
  t.ok(origin, 'COORD_PUBLIC_ORIGIN is set')
  t.equal(parsePublicOrigin(origin), origin, 'and is an origin as the coordinator normalises it')
  const serverName = /^\s*server_name (\S+);/m.exec(read('deploy/nginx/poolcoord.conf'))?.[1]
  t.equal(origin, `wss://${serverName}`, 'the nginx site name, over TLS')
})

t.test('compose file', async (t) => {
  const compose = parse(read('deploy/compose.yaml')) as {
    services: Record<string, { stop_grace_period?: string; ports?: string[]; depends_on?: unknown; environment?: Record<string, string> }>
  }
  const coord = compose.services.coordinator!
  t.ok(seconds(coord.stop_grace_period ?? '10s') >= drainS + 10, 'stop_grace_period outlasts the drain')
  t.same(coord.ports, [`127.0.0.1:${defaultPort}:${defaultPort}`], 'published on loopback only')
  t.match(coord.environment?.DATABASE_URL, /^postgres:\/\/.*@postgres:5432\//, 'uses the compose Postgres')
  t.same(coord.depends_on, { postgres: { condition: 'service_healthy' } })
  // The environment wins over the live file, so setting these would make SIGHUP powerless.
  t.equal(coord.environment?.COORD_CONFIG, '/etc/poolcoord/live.yaml', 'live settings from the mounted file')
  t.notOk(coord.environment?.COORD_REQUIRE_PROVIDER_TOKENS, 'require_provider_tokens left to the file')
  t.notOk(coord.environment?.COORD_LOG_LEVEL, 'log_level left to the file')
  t.ok(compose.services.postgres, 'has a postgres service')
  t.match(coord.environment?.COORD_PUBLIC_ORIGIN, /^\$\{COORD_PUBLIC_ORIGIN:\?/, 'the public origin comes from deploy/.env, and is required')
  const example = envExample().get('COORD_PUBLIC_ORIGIN')
  t.ok(example?.startsWith('wss://'), 'the env example shows a TLS origin')
  t.equal(parsePublicOrigin(example), example, 'that the coordinator accepts as it is')
})

t.test('cluster compose file and its NATS configuration', async (t) => {
  type Service = { stop_grace_period?: string; environment?: Record<string, string>; volumes?: string[] }
  const compose = parse(read('deploy/compose.cluster.yaml'), { merge: true }) as { services: Record<string, Service> }
  const nodes = Object.entries(compose.services).filter(([, s]) => s.environment?.COORD_NATS_URL !== undefined)
  t.ok(nodes.length >= 2, `${nodes.length} coordinator nodes`)
  const ids = nodes.map(([, s]) => s.environment?.COORD_NODE_ID)
  t.equal(new Set(ids).size, nodes.length, 'each node has its own COORD_NODE_ID')
  t.equal(new Set(nodes.map(([, s]) => s.environment?.COORD_PUBLIC_ORIGIN)).size, 1, 'every node signs the one origin providers dial')
  t.equal(new Set(nodes.map(([, s]) => s.volumes?.find((v) => v.endsWith(':/data')))).size, nodes.length, 'and its own data volume')
  for (const [name, s] of nodes) {
    // Compose fills ${VAR} from deploy/.env: the example's value, or a secret of a valid shape.
    const env = Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, fillFromExample(String(v))]))
    const config = envToConfig(readEnv(env))
    t.ok(config.cluster !== null && config.databaseUrl !== null, `${name}: a valid cluster configuration on PostgreSQL`)
    t.ok(config.identity.publicOrigin?.startsWith('wss://'), `${name}: signs the public origin of the TLS site, not its own address`)
    t.ok(seconds(s.stop_grace_period ?? '10s') >= drainS + 10, `${name}: stop_grace_period outlasts the drain`)
  }
  const nats = read('deploy/nats/nats.conf')
  const m = /^max_payload:\s*(\d+)MB$/m.exec(nats)
  t.ok(m !== null && Number(m[1]) * 1_000_000 >= MIN_NATS_MAX_PAYLOAD, 'max_payload is at least what a node requires')
  t.match(nats, /^jetstream\s*\{/m, 'JetStream on')
})

t.test('Dockerfile', async (t) => {
  const docker = read('deploy/Dockerfile')
  t.equal(docker.match(/^FROM /gm)?.length, 2, 'multi-stage')
  const users = [...docker.matchAll(/^USER (\S+)/gm)].map((m) => m[1])
  t.same(users, ['node'], 'runs as the unprivileged node user')
  t.match(docker, new RegExp(`COORD_PORT=${defaultPort}`))
  t.match(docker, /^COPY packages\/coordinator\/sql \.\/packages\/coordinator\/sql$/m, 'ships the migrations')
})

t.test('nginx site', async (t) => {
  const site = read('deploy/nginx/poolcoord.conf')
  const body = /client_max_body_size (\d+)m;/.exec(site)
  t.equal(Number(body?.[1]) * 1024 * 1024, defaultLimits.maxBodyBytes, 'body limit matches COORD_MAX_BODY_BYTES')
  t.match(site, new RegExp(`server 127\\.0\\.0\\.1:${defaultPort};`), 'upstream is the default port')

  const ws = location(site, '= /ws/provider')
  t.match(ws, /proxy_set_header Upgrade \$http_upgrade;/)
  t.match(ws, /if \(\$args\) \{\s*return 400;/, 'a query string (a token in the URL) is refused before any logging of it')
  t.match(ws, /limit_req zone=/, 'upgrade rate limited per address')
  t.match(ws, /limit_conn /, 'sockets limited per address')
  const wsRead = /proxy_read_timeout (\d+)s;/.exec(ws)
  t.ok(Number(wsRead?.[1]) > 90, 'read timeout longer than the 90 s idle reap')

  const api = location(site, '/v1/')
  t.match(api, /proxy_buffering off;/, 'SSE unbuffered')
  const apiRead = /proxy_read_timeout (\d+)s;/.exec(api)
  t.ok(Number(apiRead?.[1]) * 1000 > defaultLimits.requestTimeoutMs, 'read timeout outlasts the request deadline')

  const ops = location(site, '~ ^/(poolz|metrics|admin/|dashboard)')
  t.match(ops, /deny all;/, 'operator paths restricted')

  // proxy_set_header does not inherit into a location that sets any, so each proxied location
  // must set X-Real-IP itself: the coordinator's per-address limits trust it.
  for (const match of ['= /ws/provider', '/v1/', '~ ^/(poolz|metrics|admin/|dashboard)', '= /healthz']) {
    t.match(location(site, match), /proxy_set_header X-Real-IP \$remote_addr;/, `${match} sets X-Real-IP`)
  }
  t.notMatch(site, /\$request[ "]/, 'the access log format leaves out the query string')
})
