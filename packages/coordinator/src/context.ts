export type { AppContext } from './app-context.js'
import { VERSION } from './version.js'
import type { AppContext } from './app-context.js'
import { MintLimiter } from './limits/mint-limiter.js'
import { PrefixSessions } from './limits/prefix-sessions.js'
import { RateBucketStore } from './limits/rate-bucket-store.js'
import { KeyedMutex } from './admission/keyed-mutex.js'
import { systemClock, type Clock } from './clock.js'
import { CordonStore } from './cordons/cordon-store.js'
import { Cordons } from './cordons/cordons.js'
import { LiveConfig, type Config } from './config.js'
import { openDatabase, type Database } from './db/database.js'
import { migrate } from './db/migrate.js'
import { ByteBudget } from './routing/byte-budget.js'
import { createOperatorAuth, operatorProof } from './operator-auth.js'
import { createLogger, type Logger } from './logger.js'
import { createMetrics } from './metrics.js'
import { resolveOperatorKey } from './operator-key.js'
import type { ProviderLink } from './pool/provider-link.js'
import { Registry } from './pool/registry.js'
import { EjectionCap } from './pool/ejection-cap.js'
import { StrikeBook } from './pool/strike-book.js'
import { RequestHistory } from './request-history.js'
import { Dispatcher } from './routing/dispatcher.js'
import { TokenStore } from './tokens/token-store.js'
import { IdentityStore } from './tokens/identity-store.js'
import { ClusterNode } from './cluster/cluster-node.js'
import { drainSession, kickSession } from './pool/pool-control.js'

/** The only injection seam: tests pass a clock, a capturing logger or a shared database. */
export interface ContextOverrides {
  log?: Logger
  clock?: Clock
  db?: Database
  defaultMetrics?: boolean
}

export { VERSION }

export async function createContext(config: Config, overrides: ContextOverrides = {}): Promise<AppContext> {
  const log = overrides.log ?? createLogger({ level: config.logLevel, format: config.logFormat ?? undefined })
  const operatorKey = resolveOperatorKey(config.operatorKey, config.dataDir, log)
  const clock = overrides.clock ?? systemClock
  const ownsDb = overrides.db === undefined
  const db = overrides.db ?? (await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log }))
  let cordons: Cordons
  try {
    if (ownsDb) {
      const { applied } = await migrate(db)
      if (applied.length > 0) log.info({ event: 'db.migrated', applied }, 'applied migrations')
    }
    cordons = new Cordons(new CordonStore(db, config.limits.storeTimeoutMs))
    await cordons.load()
  } catch (err) {
    // A failed start leaves nothing open: an open PGlite would keep the process alive.
    if (ownsDb) await db.close()
    throw err
  }
  const registry = new Registry<ProviderLink>()
  const dispatcher = new Dispatcher(registry, config.limits.maxProviderBacklogBytes, log)
  let cluster: ClusterNode | null = null
  const metrics = createMetrics({
    // This node's own sessions: summed over the nodes of a cluster, each session counts once.
    sessions: () => registry.liveSessions(),
    inFlight: () => dispatcher.inFlight,
    cluster:
      config.cluster === null
        ? undefined
        : () => (cluster === null ? null : { live: cluster.isLive(), liveNodes: cluster.nodes().nodes.size, remoteInFlight: cluster.remote.inFlight }),
    defaultMetrics: overrides.defaultMetrics,
  })
  if (config.cluster !== null) {
    try {
      cluster = await ClusterNode.start({
        config: config.cluster,
        // envToConfig refuses cluster mode without DATABASE_URL.
        databaseUrl: config.databaseUrl as string,
        dataDir: config.dataDir,
        log,
        registry,
        local: dispatcher,
        maxFrameBytes: config.limits.maxDispatchFrameBytes,
        storeTimeoutMs: config.limits.storeTimeoutMs,
        metrics,
        act: (action, providerId) => {
          const session = registry.get(providerId)
          if (session === undefined) return null
          const deps = { registry, dispatcher, log }
          const done = action === 'drain' ? drainSession(deps, session, { close: true }) : kickSession(deps, session)
          return done ? { provider_id: session.providerId, assigned_id: session.assignedId, in_flight: session.inFlight } : null
        },
        refreshCordons: () => cordons.refresh(registry),
        isCordoned: (providerId) => cordons.has(providerId),
      })
    } catch (err) {
      if (ownsDb) await db.close()
      throw err
    }
  }
  return {
    config,
    live: new LiveConfig(config.live),
    log,
    clock,
    db,
    tokens: new TokenStore(db, { timeoutMs: config.limits.storeTimeoutMs }),
    identities: new IdentityStore(db, config.limits.storeTimeoutMs),
    cordons,
    registry,
    dispatcher,
    pool: cluster?.pool ?? registry,
    ejection: new EjectionCap(config.limits.maxEjectionPercent),
    strikes: new StrikeBook(),
    target: cluster?.target ?? dispatcher,
    cluster,
    buffers: new ByteBudget(config.limits.maxBufferedBytesTotal),
    metrics,
    history: new RequestHistory(),
    admissionLock: new KeyedMutex(config.limits.maxQueuedAdmissionsPerId),
    mintLimiter: new MintLimiter(new RateBucketStore(db, config.limits.storeTimeoutMs), config.limits.mint, (err) =>
      log.warn({ err }, 'pruning full rate buckets failed; retrying later'),
    ),
    prefixSessions: new PrefixSessions(config.limits.maxSessionsPerAddress, config.limits.maxUnprovenPerAddress),
    isOperator: createOperatorAuth(operatorKey),
    proveOperatorKey: (nonce) => operatorProof(operatorKey, nonce),
    startedAt: clock.now(),
    version: VERSION,
  }
}
