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
import type { RequestHistory } from './request-history.js'
import type { Dispatcher } from './routing/dispatcher.js'
import type { TokenStore } from './tokens/token-store.js'

/** Everything the coordinator's shells need, built once and passed explicitly. */
export interface AppContext {
  readonly config: Config
  readonly live: LiveConfig
  readonly log: Logger
  readonly clock: Clock
  readonly db: Database
  readonly tokens: TokenStore
  /** Cordoned provider ids: stored, and mirrored in memory for admission. */
  readonly cordons: Cordons
  readonly registry: Registry<ProviderLink>
  /** Requests in flight on provider sockets. */
  readonly dispatcher: Dispatcher
  /** Bytes held for buyers across all requests (see routing/exchange.ts, http/response-writer.ts). */
  readonly buffers: ByteBudget
  readonly metrics: Metrics
  /** Buyer requests and errors per 10 s over the last 15 minutes, for the dashboard. */
  readonly history: RequestHistory
  readonly admissionLock: KeyedMutex
  readonly isOperator: (authorization: string | undefined) => boolean
  /** operatorProof() with this coordinator's key: lets the CLI check the server before sending the key. */
  readonly proveOperatorKey: (nonce: string) => string
  readonly startedAt: number
  readonly version: string
}
