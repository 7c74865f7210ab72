import type { KeyedMutex } from './admission/keyed-mutex.js'
import type { Clock } from './clock.js'
import type { Config, LiveConfig } from './config.js'
import type { Cordons } from './cordons/cordons.js'
import type { Database } from './db/database.js'
import type { ByteBudget } from './routing/byte-budget.js'
import type { Logger } from './logger.js'
import type { Metrics } from './metrics.js'
import type { ProviderLink } from './pool/provider-link.js'
import type { Registry } from './pool/registry.js'
import type { EjectionCap } from './pool/ejection-cap.js'
import type { StrikeBook } from './pool/strike-book.js'
import type { RequestHistory } from './request-history.js'
import type { Dispatcher } from './routing/dispatcher.js'
import type { TokenStore } from './tokens/token-store.js'
import type { IdentityStore } from './tokens/identity-store.js'
import type { AttemptTarget } from './routing/attempt.js'
import type { ClusterNode } from './cluster/cluster-node.js'
import type { MintLimiter } from './limits/mint-limiter.js'
import type { PrefixSessions } from './limits/prefix-sessions.js'

/**
 * The pool as routing and the views read it: the Registry on one node; in cluster mode the whole
 * cluster's pool (cluster/cluster-pool.ts), of which the Registry holds this node's share.
 */
export type PoolView = Pick<Registry<ProviderLink>, 'sessionList' | 'liveSessions' | 'recordOutcome' | 'markBusy' | 'routingVersion'>

/** Everything the coordinator's shells need, built once and passed explicitly. */
export interface AppContext {
  readonly config: Config
  readonly live: LiveConfig
  readonly log: Logger
  readonly clock: Clock
  readonly db: Database
  readonly tokens: TokenStore
  /** Pinned identity keys (identity v2). */
  readonly identities: IdentityStore
  /** Cordoned provider ids: stored, and mirrored in memory for admission. */
  readonly cordons: Cordons
  readonly registry: Registry<ProviderLink>
  /** Requests in flight on provider sockets. */
  readonly dispatcher: Dispatcher
  /** What selection, /v1/models, /poolz and /healthz read. */
  readonly pool: PoolView
  /** Which cooling providers the ejection cap releases, per model: one memo for the router and /poolz. */
  readonly ejection: EjectionCap
  /** Strikes per provider_id, kept across its reconnects (pool/strike-book.ts). */
  readonly strikes: StrikeBook
  /** Where an exchange runs its attempts: the Dispatcher, or in cluster mode the node's target (local or remote). */
  readonly target: AttemptTarget
  /** null in single-node mode. */
  readonly cluster: ClusterNode | null
  /** Bytes held for buyers across all requests (see routing/exchange.ts, http/response-writer.ts). */
  readonly buffers: ByteBudget
  readonly metrics: Metrics
  /** Buyer requests and errors per 10 s over the last 15 minutes, for the dashboard. */
  readonly history: RequestHistory
  readonly admissionLock: KeyedMutex
  /** Mint and recovery rate limits, shared through the database (specs/admission.md §7). */
  readonly mintLimiter: MintLimiter
  /** Admitted sessions per address, all and unproven. */
  readonly prefixSessions: PrefixSessions
  readonly isOperator: (authorization: string | undefined) => boolean
  /** operatorProof() with this coordinator's key: lets the CLI check the server before sending the key. */
  readonly proveOperatorKey: (nonce: string) => string
  readonly startedAt: number
  readonly version: string
}
