import { MAX_FIRST_FRAME_BYTES, MAX_INFERENCE_REQUEST_BYTES, MAX_PROVIDER_FRAME_BYTES } from '@poolcoord/protocol'
import { parseDuration } from './cli/duration.js'
import { ConfigError } from './errors.js'
import { abuseLimitsFromEnv, defaultMintRules, type AbuseEnv } from './limits/abuse-settings.js'
import type { MintRules } from './limits/mint-limiter.js'

/** Raw settings as strings, exactly as the environment gave them. */
export interface Env extends AbuseEnv {
  host?: string
  port?: string
  databaseUrl?: string
  dataDir?: string
  operatorKey?: string
  requireProviderTokens?: string
  trustProxy?: string
  logLevel?: string
  logFormat?: string
  metricsRequireKey?: string
  maxBodyBytes?: string
  requestTimeoutS?: string
  firstChunkTimeoutS?: string
  configFile?: string
  drainTimeoutS?: string
  maxEjectionPercent?: string
  natsUrl?: string
  nodeId?: string
  nodeTtlMs?: string
  publicOrigin?: string
  tokenTtl?: string
  tokenGrace?: string
}

export interface Limits {
  /** Time a provider has, from the upgrade, to send its hello. */
  helloTimeoutMs: number
  /** A session with no inbound frame for this long is closed. */
  idleTimeoutMs: number
  /** How often the idle sweep runs. */
  sweepIntervalMs: number
  /** Told to providers in hello_ack. */
  heartbeatIntervalS: number
  /**
   * Largest WebSocket message. ws applies one limit per server, before and after admission
   * alike, so this also bounds what an unauthenticated peer can make us buffer.
   */
  maxFrameBytes: number
  /** Largest first frame (hello) accepted before admission. */
  maxHelloBytes: number
  /**
   * Connections upgraded but not yet admitted, across all peers, shared fairly between address
   * prefixes (ws/pending-limiter.ts). Sized by memory: a silent pending socket costs about 10 KiB,
   * one that is sending its first frame up to that frame (16 KiB, or 1 MiB until ws has read
   * the header that declares it); 256 slots bound pre-auth memory to about 260 MiB at worst.
   */
  maxPendingConnections: number
  /** Connections upgraded but not yet admitted, per peer address. */
  maxPendingPerIp: number
  /** From upgrade to hello_ack: queueing, store calls and the handshake together; past it, 4009. */
  admissionDeadlineMs: number
  /** Mint and recovery rate limits (limits/mint-limiter.ts); a null rule is off. */
  mint: MintRules
  /** Admitted sessions per address (IPv4 /32, IPv6 /64). */
  maxSessionsPerAddress: number
  /** Admitted unproven sessions (self_minted, bearerless_duplicate) per address. */
  maxUnprovenPerAddress: number
  /** Admitted sessions; further admissions are closed 4429. */
  maxSessions: number
  /** Upper bound on any one token-store operation; past it the caller fails closed. */
  storeTimeoutMs: number
  /** Hellos for one provider_id waiting behind the one being decided. */
  maxQueuedAdmissionsPerId: number
  /** Largest buyer request body; 413 beyond. */
  maxBodyBytes: number
  /** Time a client has to send a whole request, headers and body (Node's requestTimeout; 408 past it). */
  requestReadTimeoutMs: number
  /** Whole-request deadline for a buyer request, across failover. */
  requestTimeoutMs: number
  /** Time a provider has, per attempt, to send its first chunk or its end. */
  firstChunkTimeoutMs: number
  /** A non-streaming answer is held until it ends, so that errors keep their status; up to this size. */
  maxResponseBytes: number
  /**
   * Bytes a streaming buyer may leave unread in our send buffer. Past it the request fails:
   * one provider socket carries many requests, so pausing it for one slow reader would stall
   * the rest.
   */
  maxBuyerBacklogBytes: number
  /** Unsent bytes queued to a provider socket past which it gets no new dispatch. */
  maxProviderBacklogBytes: number
  /** Largest inference_request frame sent to a provider; protocol.md promises providers this bound. */
  maxDispatchFrameBytes: number
  /** Held non-streaming answers plus unread streaming bytes, across all requests. */
  maxBufferedBytesTotal: number
  /** Time a finished answer may sit unread in the buyer's send buffer before the connection is cut. */
  writeStallTimeoutMs: number
  /** SIGTERM: how long requests in flight may run on before the coordinator stops anyway. */
  drainTimeoutMs: number
  /**
   * The largest share of a model's providers the failure cooldown may rank last at once (Envoy's
   * max_ejection_percent); past it the ones whose run of failures began last are released for that
   * model, and get their share of its traffic (pool/ejection-cap.ts).
   */
  maxEjectionPercent: number
}

/**
 * Settings that may change while the coordinator runs: from the config file (COORD_CONFIG), read
 * again on SIGHUP, with the environment overriding it. Read them through LiveConfig.get().
 */
export interface LiveSettings {
  requireProviderTokens: boolean
  logLevel: string
}

export const defaultLive: LiveSettings = { requireProviderTokens: false, logLevel: 'info' }

/** Cluster mode: several coordinators serving one pool over NATS and PostgreSQL (specs/cluster.md). */
export interface ClusterConfig {
  /** COORD_NATS_URL: the NATS servers to try, as nats://host:port; the client also learns a NATS cluster's other members. */
  natsServers: string[]
  /** COORD_NODE_ID; null: the id kept in <dataDir>/node-id, generated on first start (cluster/node-id.ts). */
  nodeId: string | null
  /**
   * COORD_NODE_TTL_MS (default 10 s): the pc_nodes TTL, from which the fence margin (30 %) and the
   * renewal interval (20 %) follow (cluster/fence-clock.ts). Shorter means faster failover and
   * less tolerance of a slow NATS; every node of a cluster must use the same value.
   */
  timing: { ttlMs: number; marginMs: number; renewIntervalMs: number }
}

/** Provider identity v2 (specs/admission.md §6). */
export interface IdentityConfig {
  /**
   * COORD_PUBLIC_ORIGIN: the origin providers dial (wss://pool.example.com), which every proof
   * signs. null: ws://<COORD_HOST>:<bound port>, right only when agents dial that address.
   */
  publicOrigin: string | null
  /** COORD_TOKEN_TTL (default 30d): lifetime of a key-pinned id's token; it is renewed past half. */
  tokenTtlMs: number
  /** COORD_TOKEN_GRACE (default 10m): how long a renewed token still validates. */
  tokenGraceMs: number
  /** After a key rotation, the previous key may still `connect` this long (7 days). */
  previousKeyValidMs: number
}

export interface Config {
  host: string
  port: number
  /** null: the embedded PGlite database in dataDir. */
  databaseUrl: string | null
  dataDir: string
  /** null: load or generate the key file in dataDir (see operator-key.ts). */
  operatorKey: string | null
  /** Use X-Real-IP for per-address limits when the TCP peer is loopback (behind nginx). */
  trustProxy: boolean
  /** The starting log level: live.logLevel at start-up. */
  logLevel: string
  /** COORD_LOG_FORMAT: json or pretty; null (auto) is pretty on a terminal, json otherwise. */
  logFormat: 'json' | 'pretty' | null
  /** COORD_CONFIG: the file of live settings, re-read on SIGHUP; null when there is none. */
  configFile: string | null
  /** The live settings the environment fixed; they win over the file, at start and on reload. */
  envLive: Partial<LiveSettings>
  /** /metrics requires the operator bearer when true. */
  metricsRequireKey: boolean
  live: LiveSettings
  limits: Limits
  /** null: single-node mode, the default. */
  cluster: ClusterConfig | null
  identity: IdentityConfig
}

export const defaultLimits: Limits = {
  helloTimeoutMs: 10_000,
  idleTimeoutMs: 90_000,
  sweepIntervalMs: 5_000,
  heartbeatIntervalS: 30,
  maxFrameBytes: MAX_PROVIDER_FRAME_BYTES,
  maxHelloBytes: MAX_FIRST_FRAME_BYTES,
  maxPendingConnections: 256,
  maxPendingPerIp: 8,
  admissionDeadlineMs: 10_000,
  mint: defaultMintRules,
  maxSessionsPerAddress: 1024,
  maxUnprovenPerAddress: 16,
  maxSessions: 50_000,
  storeTimeoutMs: 5_000,
  maxQueuedAdmissionsPerId: 32,
  maxBodyBytes: 1024 * 1024,
  requestReadTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  firstChunkTimeoutMs: 60_000,
  maxResponseBytes: 16 * 1024 * 1024,
  maxBuyerBacklogBytes: 1024 * 1024,
  maxProviderBacklogBytes: 8 * 1024 * 1024,
  maxDispatchFrameBytes: MAX_INFERENCE_REQUEST_BYTES,
  maxBufferedBytesTotal: 256 * 1024 * 1024,
  writeStallTimeoutMs: 30_000,
  drainTimeoutMs: 30_000,
  maxEjectionPercent: 50,
}

/** The only reader of process.env in the codebase. */
export function readEnv(env: NodeJS.ProcessEnv = process.env): Env {
  return {
    host: env.COORD_HOST,
    port: env.COORD_PORT,
    databaseUrl: env.DATABASE_URL,
    dataDir: env.COORD_DATA_DIR,
    operatorKey: env.COORD_OPERATOR_KEY,
    requireProviderTokens: env.COORD_REQUIRE_PROVIDER_TOKENS,
    trustProxy: env.COORD_TRUST_PROXY,
    logLevel: env.COORD_LOG_LEVEL,
    logFormat: env.COORD_LOG_FORMAT,
    metricsRequireKey: env.COORD_METRICS_REQUIRE_KEY,
    maxBodyBytes: env.COORD_MAX_BODY_BYTES,
    requestTimeoutS: env.COORD_REQUEST_TIMEOUT_S,
    firstChunkTimeoutS: env.COORD_FIRST_CHUNK_TIMEOUT_S,
    configFile: env.COORD_CONFIG,
    drainTimeoutS: env.COORD_DRAIN_TIMEOUT_S,
    maxEjectionPercent: env.COORD_MAX_EJECTION_PERCENT,
    natsUrl: env.COORD_NATS_URL,
    nodeId: env.COORD_NODE_ID,
    nodeTtlMs: env.COORD_NODE_TTL_MS,
    publicOrigin: env.COORD_PUBLIC_ORIGIN,
    tokenTtl: env.COORD_TOKEN_TTL,
    tokenGrace: env.COORD_TOKEN_GRACE,
    mintRateAddress: env.COORD_MINT_RATE_ADDRESS,
    mintRatePrefix: env.COORD_MINT_RATE_PREFIX,
    mintRateGlobal: env.COORD_MINT_RATE_GLOBAL,
    recoveryRate: env.COORD_RECOVERY_RATE,
    mintRateNewcomer: env.COORD_MINT_RATE_NEWCOMER,
    healRate: env.COORD_HEAL_RATE,
    admissionDeadlineS: env.COORD_ADMISSION_DEADLINE_S,
    maxPending: env.COORD_MAX_PENDING,
    maxPendingPerAddress: env.COORD_MAX_PENDING_PER_ADDRESS,
    maxSessionsPerAddress: env.COORD_MAX_SESSIONS_PER_ADDRESS,
    maxUnprovenPerAddress: env.COORD_MAX_UNPROVEN_PER_ADDRESS,
  }
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
export const LOG_FORMATS = ['auto', 'pretty', 'json']
export const MIN_OPERATOR_KEY_LENGTH = 16
/** A node id becomes a NATS subject token and a KV key (`n.<id>`): no dots, no upper case, bounded. */
export const NODE_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/
export const MAX_NATS_URLS = 16
export const MAX_NATS_URL_LENGTH = 256

/** `file` holds the live settings read from COORD_CONFIG, if any (see config-file.ts). */
export function envToConfig(env: Env, limits: Partial<Limits> = {}, file: Partial<LiveSettings> = {}): Config {
  const port = parsePort(env.port)
  const operatorKey = env.operatorKey === undefined ? null : env.operatorKey
  if (operatorKey !== null) checkOperatorKey(operatorKey, 'COORD_OPERATOR_KEY')
  const envLive: Partial<LiveSettings> = {}
  if (env.logLevel !== undefined) {
    if (!LOG_LEVELS.includes(env.logLevel)) {
      throw new ConfigError(`COORD_LOG_LEVEL=${JSON.stringify(env.logLevel.slice(0, 32))} is not a log level; use one of ${LOG_LEVELS.join(', ')}`)
    }
    envLive.logLevel = env.logLevel
  }
  if (nonEmpty(env.requireProviderTokens) !== undefined) {
    envLive.requireProviderTokens = parseBool(env.requireProviderTokens, 'COORD_REQUIRE_PROVIDER_TOKENS', false)
  }
  const live = { ...defaultLive, ...file, ...envLive }
  const databaseUrl = nonEmpty(env.databaseUrl) ?? null
  const cluster = clusterConfig(env)
  if (cluster !== null && databaseUrl === null) {
    throw new ConfigError(
      'cluster mode (COORD_NATS_URL) needs PostgreSQL: set DATABASE_URL. The embedded PGlite database belongs to one process and cannot be shared by several coordinators',
    )
  }
  const logFormat = nonEmpty(env.logFormat)?.toLowerCase() ?? 'auto'
  if (!LOG_FORMATS.includes(logFormat)) throw new ConfigError(`COORD_LOG_FORMAT must be one of ${LOG_FORMATS.join(', ')}`)
  return {
    host: nonEmpty(env.host) ?? '127.0.0.1',
    port,
    databaseUrl,
    dataDir: nonEmpty(env.dataDir) ?? './data',
    operatorKey,
    trustProxy: parseBool(env.trustProxy, 'COORD_TRUST_PROXY', false),
    logLevel: live.logLevel,
    logFormat: logFormat === 'auto' ? null : (logFormat as 'json' | 'pretty'),
    configFile: nonEmpty(env.configFile) ?? null,
    envLive,
    metricsRequireKey: parseBool(env.metricsRequireKey, 'COORD_METRICS_REQUIRE_KEY', false),
    live,
    limits: { ...defaultLimits, ...envLimits(env), ...limits },
    cluster,
    identity: identityConfig(env),
  }
}

const DAY_MS = 86_400_000

function identityConfig(env: Env): IdentityConfig {
  const ttl = parseDurationSetting(env.tokenTtl, 'COORD_TOKEN_TTL', 3_600_000, 365 * DAY_MS) ?? 30 * DAY_MS
  const grace = parseDurationSetting(env.tokenGrace, 'COORD_TOKEN_GRACE', 60_000, DAY_MS) ?? 10 * 60_000
  if (grace * 2 > ttl) throw new ConfigError('COORD_TOKEN_GRACE must be at most half of COORD_TOKEN_TTL')
  return { publicOrigin: parsePublicOrigin(nonEmpty(env.publicOrigin)), tokenTtlMs: ttl, tokenGraceMs: grace, previousKeyValidMs: 7 * DAY_MS }
}

function parseDurationSetting(raw: string | undefined, name: string, min: number, max: number): number | undefined {
  if (nonEmpty(raw) === undefined) return undefined
  const ms = parseDuration(raw as string)
  if (ms === null || ms < min || ms > max) {
    throw new ConfigError(`${name} must be a duration such as 30d, 12h or 90m, from ${min / 60_000} minutes to ${max / DAY_MS} days`)
  }
  return ms
}

/** The origin every identity proof signs: ws:// or wss://, a host, an optional port, nothing else. */
export function parsePublicOrigin(raw: string | undefined): string | null {
  if (raw === undefined) return null
  let url: URL
  try {
    url = new URL(raw.trim())
  } catch {
    throw new ConfigError('COORD_PUBLIC_ORIGIN is not a URL: use the origin providers dial, e.g. wss://pool.example.com')
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new ConfigError('COORD_PUBLIC_ORIGIN must start with wss:// (or ws://)')
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new ConfigError('COORD_PUBLIC_ORIGIN must be an origin only (wss://host[:port]), with no path, query or credentials')
  }
  return url.origin
}

function clusterConfig(env: Env): ClusterConfig | null {
  const raw = nonEmpty(env.natsUrl)
  const nodeId = nonEmpty(env.nodeId) ?? null
  if (raw === undefined) {
    if (nodeId !== null) throw new ConfigError('COORD_NODE_ID applies only in cluster mode: set COORD_NATS_URL too, or unset COORD_NODE_ID')
    if (nonEmpty(env.nodeTtlMs) !== undefined) throw new ConfigError('COORD_NODE_TTL_MS applies only in cluster mode: set COORD_NATS_URL too, or unset it')
    return null
  }
  if (nodeId !== null) checkNodeId(nodeId, 'COORD_NODE_ID')
  return { natsServers: parseNatsUrls(raw), nodeId, timing: nodeTiming(parseBounded(env.nodeTtlMs, 'COORD_NODE_TTL_MS', 3000, 60_000) ?? 10_000) }
}

/** The fence timing for a node TTL: margin 30 %, renewal every 20 %, so three renewals fit before the deadline (specs/cluster.md §3.2). */
export function nodeTiming(ttlMs: number): ClusterConfig['timing'] {
  return { ttlMs, marginMs: Math.round(ttlMs * 0.3), renewIntervalMs: Math.round(ttlMs * 0.2) }
}

/** A node id from the environment or the node-id file; `source` names where it came from. */
export function checkNodeId(id: string, source: string): void {
  if (!NODE_ID_PATTERN.test(id)) {
    throw new ConfigError(`${source} must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit`)
  }
}

/**
 * COORD_NATS_URL: nats://host[:port], comma-separated. Messages name an entry by its position and
 * never echo it, and credentials in the URL are refused, so no password reaches a log; NATS
 * authentication is not built yet (specs/cluster.md §8).
 */
export function parseNatsUrls(raw: string): string[] {
  const entries = raw.split(',').map((e) => e.trim())
  if (entries.length > MAX_NATS_URLS) throw new ConfigError(`COORD_NATS_URL lists more than ${MAX_NATS_URLS} URLs`)
  return entries.map((entry, i) => {
    const which = entries.length === 1 ? 'COORD_NATS_URL' : `COORD_NATS_URL entry ${i + 1}`
    if (entry === '') throw new ConfigError(`${which} is empty: separate URLs with single commas`)
    if (entry.length > MAX_NATS_URL_LENGTH) throw new ConfigError(`${which} is longer than ${MAX_NATS_URL_LENGTH} characters`)
    let url: URL
    try {
      url = new URL(entry)
    } catch {
      throw new ConfigError(`${which} is not a URL: use nats://host:port`)
    }
    if (url.protocol !== 'nats:') throw new ConfigError(`${which} must start with nats:// (nats://host:port)`)
    if (url.username !== '' || url.password !== '') throw new ConfigError(`${which} must not carry credentials: NATS authentication is not supported yet`)
    if (url.hostname === '') throw new ConfigError(`${which} has no host: use nats://host:port`)
    if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
      throw new ConfigError(`${which} must be nats://host:port, with no path or query`)
    }
    if (url.port === '0') throw new ConfigError(`${which} has port 0: use the port nats-server listens on (4222 by default)`)
    return `nats://${url.hostname}:${url.port === '' ? '4222' : url.port}`
  })
}

function envLimits(env: Env): Partial<Limits> {
  const out: Partial<Limits> = {}
  const body = parseBounded(env.maxBodyBytes, 'COORD_MAX_BODY_BYTES', 1024, 128 * 1024 * 1024)
  if (body !== undefined) out.maxBodyBytes = body
  const request = parseBounded(env.requestTimeoutS, 'COORD_REQUEST_TIMEOUT_S', 1, 3600)
  if (request !== undefined) out.requestTimeoutMs = request * 1000
  const first = parseBounded(env.firstChunkTimeoutS, 'COORD_FIRST_CHUNK_TIMEOUT_S', 1, 3600)
  if (first !== undefined) out.firstChunkTimeoutMs = first * 1000
  const drain = parseBounded(env.drainTimeoutS, 'COORD_DRAIN_TIMEOUT_S', 0, 3600)
  if (drain !== undefined) out.drainTimeoutMs = drain * 1000
  const ejection = parseBounded(env.maxEjectionPercent, 'COORD_MAX_EJECTION_PERCENT', 0, 100)
  if (ejection !== undefined) out.maxEjectionPercent = ejection
  return { ...out, ...abuseLimitsFromEnv(env) }
}

function parseBounded(raw: string | undefined, name: string, min: number, max: number): number | undefined {
  if (raw === undefined || raw === '') return undefined
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}`)
  }
  return n
}

/** An operator key must never be empty: an empty key would let everyone in. */
export function checkOperatorKey(key: string, source: string): void {
  if (key.trim().length < MIN_OPERATOR_KEY_LENGTH || /\s/.test(key)) {
    throw new ConfigError(`${source} must be at least ${MIN_OPERATOR_KEY_LENGTH} characters with no white space`)
  }
}

function parsePort(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 8080
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
    throw new ConfigError('COORD_PORT must be an integer from 0 to 65535')
  }
  return Number(raw)
}

function parseBool(raw: string | undefined, name: string, fallback: boolean): boolean {
  if (raw === undefined || raw === '') return fallback
  const v = raw.toLowerCase()
  if (v === 'true' || v === '1' || v === 'yes') return true
  if (v === 'false' || v === '0' || v === 'no') return false
  throw new ConfigError(`${name} must be true or false`)
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v
}

/**
 * Holds the settings that may change at run time. Readers call get() on every use, so a
 * reload (set) takes effect at the next upgrade without touching live sessions.
 */
export class LiveConfig {
  constructor(private settings: LiveSettings) {}
  get(): LiveSettings {
    return this.settings
  }
  set(next: LiveSettings): void {
    this.settings = Object.freeze({ ...next })
  }
}
