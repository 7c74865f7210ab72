/**
 * What the provider agent does after its socket closes: reconnect after a delay, or stop. Pure:
 * the randomness comes in as a number in [0, 1).
 *
 * | close                                        | action                                         |
 * |----------------------------------------------|------------------------------------------------|
 * | 4006 replaced                                | exit: another instance of this provider is live |
 * | 4000, 4001, 4003, 4004 (our frames are wrong)| exit: retrying would send the same frames       |
 * | 4005 while presenting a token                | long backoff: revoked, or locked out by TOFU;   |
 * |                                              | once, right after the token was accepted: short |
 * | 4005 without a token                         | normal backoff, floored at the pool-full floor  |
 * | 4008 mint rate limited                       | long backoff: the limit refills over an hour    |
 * | 4429 pool full / admission busy              | normal backoff, floored                         |
 * | 1001 shutting down                           | normal backoff, over a window of at least 8 s   |
 * | anything else (1000, 1006, 4007, 4009, 4011) | normal backoff                                  |
 *
 * Normal backoff is capped exponential with full jitter (uniform in [0, min(cap, base·2^n)]), so
 * a coordinator restart spreads thousands of reconnects over the window instead of one spike.
 * The long backoff is never shorter than its floor: a refused token will be refused again until
 * an operator acts, and hammering would only fill the coordinator's logs. One exception: the
 * first refusal of a token the coordinator accepted since its last refusal is retried after
 * 5 to 30 s, because the coordinator also answers 4005 when its store is briefly unavailable,
 * and a database blip must not park the whole fleet for minutes. A second refusal in a row is
 * the long backoff, so a revoked token is tried at most twice before the long wait.
 * After 1001 every agent of a restarted coordinator reconnects at once, most of them from a
 * stable connection (attempt 0), so that window starts at 8 s instead of 1 s.
 */
import { Close } from '@poolcoord/protocol'

export interface BackoffSettings {
  baseMs: number
  capMs: number
  /** A connection that stayed admitted this long resets the attempt count. */
  stableMs: number
  /** Lower bound for 4429 and for a tokenless 4005. */
  floorMs: number
  /** The long backoff after a refused token: uniform in [lockoutMinMs, lockoutMaxMs]. */
  lockoutMinMs: number
  lockoutMaxMs: number
}

export const defaultBackoff: BackoffSettings = {
  baseMs: 1_000,
  capMs: 60_000,
  stableMs: 60_000,
  floorMs: 5_000,
  lockoutMinMs: 5 * 60_000,
  lockoutMaxMs: 15 * 60_000,
}

/** Full jitter: uniform in [0, min(cap, base·2^attempt)]. */
export function jitteredDelay(attempt: number, s: Pick<BackoffSettings, 'baseMs' | 'capMs'>, random: number): number {
  const ceiling = Math.min(s.capMs, s.baseMs * 2 ** Math.min(attempt, 30))
  return Math.floor(random * ceiling)
}

export type CloseKind = 'replaced' | 'protocol_error' | 'token_refused' | 'credential_required' | 'mint_limited' | 'pool_full' | 'transient'

export interface Closed {
  /** The WebSocket close code, or null when the upgrade itself failed (refused, HTTP 429/503). */
  code: number | null
  /** Whether the connection presented a bearer token. */
  withToken: boolean
  /** The coordinator accepted this token since it last refused it (see the module comment). */
  tokenAcceptedSinceRefusal?: boolean
}

export function classifyClose({ code, withToken }: Closed): CloseKind {
  switch (code) {
    case Close.replaced.code:
      return 'replaced'
    case Close.notHello.code:
    case Close.invalidHello.code:
    case Close.invalidFrame.code:
    case Close.unsupportedVersion.code:
      return 'protocol_error'
    case Close.invalidToken.code:
      return withToken ? 'token_refused' : 'credential_required'
    case Close.mintRateLimited.code:
      return 'mint_limited'
    case Close.poolFull.code:
      return 'pool_full'
    default:
      return 'transient'
  }
}

export type Decision = { action: 'exit'; kind: CloseKind } | { action: 'retry'; kind: CloseKind; delayMs: number }

/** `attempt` counts consecutive failed connections since the last stable one, from 0. */
export function decideReconnect(closed: Closed, attempt: number, s: BackoffSettings, random: number): Decision {
  const kind = classifyClose(closed)
  switch (kind) {
    case 'replaced':
    case 'protocol_error':
      return { action: 'exit', kind }
    case 'token_refused':
      if (closed.tokenAcceptedSinceRefusal === true) return { action: 'retry', kind, delayMs: s.floorMs + Math.floor(random * 5 * s.floorMs) }
      return { action: 'retry', kind, delayMs: s.lockoutMinMs + Math.floor(random * (s.lockoutMaxMs - s.lockoutMinMs)) }
    case 'mint_limited':
      // Retrying sooner only spends the next token the moment it refills, or is refused for free.
      return { action: 'retry', kind, delayMs: s.lockoutMinMs + Math.floor(random * (s.lockoutMaxMs - s.lockoutMinMs)) }
    case 'credential_required':
    case 'pool_full':
      return { action: 'retry', kind, delayMs: Math.max(s.floorMs, jitteredDelay(attempt, s, random)) }
    case 'transient':
      return { action: 'retry', kind, delayMs: jitteredDelay(closed.code === Close.shuttingDown.code ? Math.max(attempt, 3) : attempt, s, random) }
  }
}

/**
 * The attempt number to back off by after a close: the running count, or 0 when the connection
 * that just closed had stayed admitted for the stable period. The driver adds one afterwards.
 */
export function effectiveAttempt(attempt: number, admittedForMs: number | null, s: Pick<BackoffSettings, 'stableMs'>): number {
  return admittedForMs !== null && admittedForMs >= s.stableMs ? 0 : attempt
}
