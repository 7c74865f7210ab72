import { sql, type RawBuilder } from 'kysely'
import type { Database } from '../db/database.js'
import { isUniqueViolation } from '../db/pg-errors.js'
import { storeCall } from '../db/store-call.js'
import type { ProviderTokenRow, TokenOrigin } from '../db/schema.js'
import {
  ActiveTokenExistsError,
  IdentityPinnedError,
  InvalidProviderIdError,
  StoreUnavailableError,
  TokenNotFoundError,
  TokenPrefixAmbiguousError,
  TokenPrefixInvalidError,
} from '../errors.js'
import { PROVIDER_ID_RE, TOKEN_PREFIX_RE, hashToken, tokenPrefix } from '@poolcoord/protocol'
import { generateToken } from './token.js'
import { validatedToken, type ValidatedToken } from './validate-and-mark.js'
import { ValidateBatcher } from './validate-batcher.js'

export type { ValidatedToken }

export const ONE_ACTIVE_INDEX = 'provider_tokens_one_active_per_provider'

export interface IssuedToken {
  /** Cleartext: hand it to its owner once, never store or log it. */
  token: string
  tokenPrefix: string
  providerId: string
}

export interface TokenInfo {
  id: string
  tokenPrefix: string
  providerId: string
  providerName: string
  origin: TokenOrigin
  createdAt: Date
  lastUsedAt: Date | null
  revokedAt: Date | null
  expiresAt: Date | null
  graceUntil: Date | null
}

/**
 * The provider token store. Each operation is exactly one SQL statement, so that no decision
 * is ever made on a read that another connection could invalidate before the write. Every
 * failure other than a named constraint surfaces as StoreUnavailableError: callers fail closed.
 */
export class TokenStore {
  private readonly timeoutMs: number
  /** Concurrent validations share statements (validate-batcher.ts). */
  readonly batcher: ValidateBatcher

  /** timeoutMs bounds every operation on the client side too: a hung store fails closed. */
  constructor(
    private readonly db: Database,
    opts: { timeoutMs?: number } = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 5000
    this.batcher = new ValidateBatcher(db, { timeoutMs: this.timeoutMs })
  }

  /**
   * Validates and marks proven in one statement (validate-and-mark.ts), which also checks
   * revocation, grace and expiry at `now` (the coordinator's clock) and reads whether the id has
   * a pinned key. Returns null for a token that is unknown, revoked, past its grace or expired.
   */
  async validateAndMarkUsed(token: string, now: number = Date.now()): Promise<ValidatedToken | null> {
    const row = await this.run(() => this.batcher.validate(hashToken(token), new Date(now)))
    return row === undefined ? null : validatedToken(row)
  }

  /**
   * Inserts a new token. A second unrevoked token for the id is refused by the unique index. A
   * self-minted token is never inserted for an id with a pinned key (IdentityPinnedError): the
   * guard is part of the INSERT, so a pin that commits first always wins.
   */
  async issue(providerId: string, providerName: string, origin: TokenOrigin): Promise<IssuedToken> {
    if (!PROVIDER_ID_RE.test(providerId)) throw new InvalidProviderIdError()
    const token = generateToken()
    const name = boundedName(providerName, providerId)
    let inserted
    try {
      inserted = await storeCall(
        this.timeoutMs,
        () =>
          sql<{ id: string }>`
            INSERT INTO provider_tokens (token_hash, token_prefix, provider_id, provider_name, origin)
            SELECT ${hashToken(token)}, ${tokenPrefix(token)}, ${providerId}, ${name}, ${origin}
            WHERE ${origin} <> 'self_minted' OR NOT EXISTS (SELECT 1 FROM provider_identity_keys WHERE provider_id = ${providerId})
            RETURNING id
          `.execute(this.db.kysely),
        (err) => (isUniqueViolation(err, ONE_ACTIVE_INDEX) ? new ActiveTokenExistsError(providerId) : null),
      )
    } catch (err) {
      // Timed out, but the INSERT may still commit (it waited on a lock, the server was frozen):
      // nobody will ever receive this token, so once the statement has ended it is revoked.
      if (err instanceof StoreUnavailableError) void err.settled.then(() => this.revoke(token)).catch(() => undefined)
      throw err
    }
    if (inserted.rows.length === 0) throw new IdentityPinnedError(providerId)
    return { token, tokenPrefix: tokenPrefix(token), providerId }
  }

  /**
   * Revokes the id's active token only if it was self-minted and never used. An operator-issued
   * token is never self-healed away: the operator bound that identity on purpose.
   */
  async revokeUnused(providerId: string): Promise<boolean> {
    const rows = await this.run(() =>
      this.db.kysely
        .updateTable('provider_tokens')
        .set({ revoked_at: sql<Date>`now()` })
        .where('provider_id', '=', providerId)
        .where('revoked_at', 'is', null)
        .where('last_used_at', 'is', null)
        .where('origin', '=', 'self_minted')
        // A pinned id is never self-healed, even if a pin commits between admission's steps.
        .where(({ not, exists, selectFrom }) => not(exists(selectFrom('provider_identity_keys').select('provider_id').where('provider_id', '=', providerId))))
        .returning('id')
        .execute(),
    )
    return rows.length > 0
  }

  async hasActive(providerId: string): Promise<boolean> {
    const row = await this.run(() =>
      this.db.kysely
        .selectNoFrom((eb) =>
          eb.exists(eb.selectFrom('provider_tokens').select('id').where('provider_id', '=', providerId).where('revoked_at', 'is', null)).as('active'),
        )
        .executeTakeFirstOrThrow(),
    )
    return Boolean(row.active)
  }

  /** Revokes exactly this token if it is still active (used to undo a mint nobody received). */
  async revoke(token: string): Promise<boolean> {
    const rows = await this.run(() =>
      this.updateActive(token, { revoked_at: sql<Date>`now()` })
        .returning('id')
        .execute(),
    )
    return rows.length > 0
  }

  /** One UPDATE of the token's row, only while it is unrevoked: the check and the write are one statement. */
  private updateActive(token: string, set: { last_used_at: RawBuilder<Date> } | { revoked_at: RawBuilder<Date> }) {
    return this.db.kysely.updateTable('provider_tokens').set(set).where('token_hash', '=', hashToken(token)).where('revoked_at', 'is', null)
  }

  /**
   * Revokes the one active token whose prefix starts with `prefix` (6-12 hex). A prefix that
   * matches two or more active tokens revokes nothing. One statement: the match count and the
   * update see the same snapshot.
   */
  async revokeByPrefix(prefix: string): Promise<TokenInfo> {
    if (!TOKEN_PREFIX_RE.test(prefix)) throw new TokenPrefixInvalidError()
    const result = await this.run(() =>
      sql<TokenRowWithCount>`
        WITH m AS (
          SELECT id FROM provider_tokens
          WHERE revoked_at IS NULL AND starts_with(token_prefix, ${prefix})
          LIMIT 2
        ), u AS (
          UPDATE provider_tokens SET revoked_at = now()
          WHERE revoked_at IS NULL AND id IN (SELECT id FROM m) AND (SELECT count(*) FROM m) = 1
          RETURNING id, token_prefix, provider_id, provider_name, origin,
                    created_at, last_used_at, revoked_at, expires_at, grace_until
        )
        SELECT c.matched, u.* FROM (SELECT count(*) AS matched FROM m) c LEFT JOIN u ON true
      `.execute(this.db.kysely),
    )
    const row = result.rows[0]
    const matched = Number(row?.matched ?? 0)
    if (matched > 1) throw new TokenPrefixAmbiguousError()
    if (row === undefined || matched === 0 || row.id === null) throw new TokenNotFoundError()
    return toInfo(row as TokenRow)
  }

  /**
   * Unproven rows (active, never used) created more than `olderThanMs` ago: listed, or with
   * `apply` revoked in the same single statement. Rows are revoked, never deleted, so the
   * history stays. Tokens of key-pinned ids (they have an expiry) are left out: they expire by
   * themselves, and an agent that has held one session for weeks has not lost its token.
   */
  async pruneUnproven(olderThanMs: number, apply: boolean): Promise<TokenInfo[]> {
    const secs = Math.floor(olderThanMs / 1000)
    const rows = await this.run(() =>
      apply
        ? sql<TokenRow>`
            UPDATE provider_tokens SET revoked_at = now()
            WHERE revoked_at IS NULL AND last_used_at IS NULL AND expires_at IS NULL
              AND created_at < now() - make_interval(secs => ${secs})
            RETURNING id, token_prefix, provider_id, provider_name, origin, created_at, last_used_at, revoked_at, expires_at, grace_until
          `.execute(this.db.kysely)
        : sql<TokenRow>`
            SELECT id, token_prefix, provider_id, provider_name, origin, created_at, last_used_at, revoked_at, expires_at, grace_until
            FROM provider_tokens
            WHERE revoked_at IS NULL AND last_used_at IS NULL AND expires_at IS NULL
              AND created_at < now() - make_interval(secs => ${secs})
            ORDER BY id
          `.execute(this.db.kysely),
    )
    return rows.rows.map(toInfo)
  }

  /** Every row, oldest first. Never the hash, never the token. */
  async list(opts: { activeOnly?: boolean } = {}): Promise<TokenInfo[]> {
    const rows = await this.run(() => {
      let q = this.db.kysely
        .selectFrom('provider_tokens')
        .select(['id', 'token_prefix', 'provider_id', 'provider_name', 'origin', 'created_at', 'last_used_at', 'revoked_at', 'expires_at', 'grace_until'])
        .orderBy('id')
      if (opts.activeOnly) q = q.where('revoked_at', 'is', null)
      return q.execute()
    })
    return rows.map(toInfo)
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    return storeCall(this.timeoutMs, fn)
  }
}

type TokenRow = Omit<ProviderTokenRow, 'token_hash'>
type TokenRowWithCount = { matched: string | number } & { [K in keyof TokenRow]: TokenRow[K] | null }

function toInfo(r: TokenRow): TokenInfo {
  return {
    id: String(r.id),
    tokenPrefix: r.token_prefix,
    providerId: r.provider_id,
    providerName: r.provider_name,
    origin: r.origin,
    createdAt: new Date(r.created_at),
    lastUsedAt: r.last_used_at === null ? null : new Date(r.last_used_at),
    revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
    expiresAt: r.expires_at === null || r.expires_at === undefined ? null : new Date(r.expires_at),
    graceUntil: r.grace_until === null || r.grace_until === undefined ? null : new Date(r.grace_until),
  }
}

/** A provider name as stored: no control characters, at most 253 characters, never empty. */
export function boundedName(name: string, fallback: string): string {
  const clean = name
    .replace(/[\u0000-\u001f\u007f]/g, '')
    .trim()
    .slice(0, 253)
  return clean === '' ? fallback : clean
}
