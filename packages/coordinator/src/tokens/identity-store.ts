import { sql, type Transaction } from 'kysely'
import type { Database } from '../db/database.js'
import type { DatabaseSchema } from '../db/schema.js'
import { isUniqueViolation } from '../db/pg-errors.js'
import { storeCall } from '../db/store-call.js'
import { IdentityNotPinnedError, InvalidProviderIdError } from '../errors.js'
import { PROVIDER_ID_RE, hashToken, tokenPrefix } from '@poolcoord/protocol'
import { ONE_ACTIVE_INDEX, boundedName, type IssuedToken } from './token-store.js'
import { generateToken } from './token.js'
import { pinnedKeyOf, type PinnedKey } from './pinned-key.js'

export type { PinnedKey }

const KEY_PKEY = 'provider_identity_keys_pkey'

export interface IdentityInfo extends PinnedKey {
  createdAt: Date
  rotatedAt: Date | null
  revokedAt: Date | null
}

/** What happens to the presented bearer when a key-pinned id connects (admission/key-admission.ts). */
export type TokenRenewal = 'keep' | 'supersede' | 'replace_successor'

/** Why a write was refused: a guard found the store changed since admission read it. Nothing was written. */
export type Refused = { ok: false; why: 'proven_token' | 'race' | 'key_changed' | 'token_changed' }

export type Written<T> = { ok: true } & T

/** Aborts a transaction without it being a store error. */
class Refusal extends Error {
  constructor(readonly why: Refused['why']) {
    super(why)
  }
}

/**
 * The identity-key store (specs/admission.md §6). Every write is one transaction whose WHERE
 * clauses re-check what admission decided on, so a decision made on a read that has since gone
 * stale writes nothing (Refused) instead of something wrong; the unique indexes decide every
 * race. Expiry and grace times come from the coordinator's clock (`now`), so that one clock
 * rules them; the audit columns use the database's.
 */
export class IdentityStore {
  /**
   * Counts the identity writes this process has made (every transaction: pins, recoveries,
   * rotations, renewals, revocations, resets), committed or not. A bearer's pin is read at its
   * upgrade, up to the hello deadline before admission decides on it. On one node every identity
   * write goes through this store, so an unchanged count means the pin read at the upgrade is
   * still the pin, and admission need not read it again; a changed count, or cluster mode (where
   * another node writes), makes admission check again under the id's lock.
   */
  writeEpoch = 0

  constructor(
    private readonly db: Database,
    private readonly timeoutMs: number,
  ) {}

  async get(providerId: string): Promise<PinnedKey | null> {
    const row = await this.run(() => this.db.kysely.selectFrom('provider_identity_keys').selectAll().where('provider_id', '=', providerId).executeTakeFirst())
    return row === undefined ? null : pinnedKeyOf(row)
  }

  /**
   * A tokenless `enroll` of an id with no pinned key: self-heal a never-used self-minted token
   * (unless a live session holds it), then pin the key and mint a token, all or nothing. An id
   * whose token was proven is a TOFU reject; a racing enrolment loses on the primary key.
   */
  enrollNew(a: {
    providerId: string
    name: string
    key: string
    now: number
    ttlMs: number
    healUnused: boolean
  }): Promise<Written<{ token: IssuedToken }> | Refused> {
    return this.tx(async (trx) => {
      if (a.healUnused) {
        await sql`
          UPDATE provider_tokens SET revoked_at = now()
          WHERE provider_id = ${a.providerId} AND revoked_at IS NULL AND last_used_at IS NULL AND origin = 'self_minted'
        `.execute(trx)
      }
      const active = await sql<{ n: number }>`SELECT 1 AS n FROM provider_tokens WHERE provider_id = ${a.providerId} AND revoked_at IS NULL LIMIT 1`.execute(
        trx,
      )
      if (active.rows.length > 0) throw new Refusal('proven_token')
      await trx.insertInto('provider_identity_keys').values({ provider_id: a.providerId, public_key: a.key }).execute()
      return { token: await mint(trx, a) }
    })
  }

  /**
   * `enroll` with a valid bearer on an id with no pinned key: pin the key, and give the bearer
   * its expiry from now on (it had none while the id had no key).
   */
  pinInPlace(a: { providerId: string; key: string; tokenId: string; now: number; ttlMs: number }): Promise<Written<object> | Refused> {
    return this.tx(async (trx) => {
      await trx.insertInto('provider_identity_keys').values({ provider_id: a.providerId, public_key: a.key }).execute()
      const r = await sql`
        UPDATE provider_tokens SET expires_at = ${new Date(a.now + a.ttlMs)}
        WHERE id = ${a.tokenId} AND provider_id = ${a.providerId} AND revoked_at IS NULL AND grace_until IS NULL
      `.execute(trx)
      if (Number(r.numAffectedRows ?? 0) !== 1) throw new Refusal('token_changed')
      return {}
    })
  }

  /**
   * For a v1 bearer admitted on facts read at its upgrade: the token is still active and its id
   * still has no pinned key. One statement.
   */
  async stillUnpinned(tokenId: string, providerId: string): Promise<boolean> {
    const r = await this.run(() =>
      sql`
        SELECT 1 FROM provider_tokens t
        WHERE t.id = ${tokenId} AND t.revoked_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM provider_identity_keys k WHERE k.provider_id = ${providerId})
      `.execute(this.db.kysely),
    )
    return r.rows.length === 1
  }

  /**
   * Undoes a renewal whose successor never reached its provider (the session did not enter the
   * pool): the successor is revoked and the presented token leaves the grace this renewal gave it.
   */
  async undoRenewal(a: { providerId: string; tokenId: string; successor: string }): Promise<void> {
    await this.tx(async (trx) => {
      await trx
        .updateTable('provider_tokens')
        .set({ revoked_at: sql<Date>`now()` })
        .where('token_hash', '=', hashToken(a.successor))
        .where('revoked_at', 'is', null)
        .execute()
      await sql`
        UPDATE provider_tokens SET grace_until = NULL
        WHERE id = ${a.tokenId} AND provider_id = ${a.providerId} AND revoked_at IS NULL AND grace_until IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM provider_tokens s WHERE s.provider_id = ${a.providerId} AND s.revoked_at IS NULL AND s.grace_until IS NULL)
      `.execute(trx)
      return {}
    })
  }

  /** `recover`: the key is still the id's current, unrevoked key; revoke every token of the id and mint one. */
  recover(a: { providerId: string; name: string; key: string; now: number; ttlMs: number }): Promise<Written<{ token: IssuedToken }> | Refused> {
    return this.tx(async (trx) => {
      // FOR UPDATE: recoveries of one id queue here, so each sees the token its predecessor minted and revokes it.
      const k = await sql`
        SELECT 1 FROM provider_identity_keys WHERE provider_id = ${a.providerId} AND public_key = ${a.key} AND revoked_at IS NULL FOR UPDATE
      `.execute(trx)
      if (k.rows.length === 0) throw new Refusal('key_changed')
      await sql`UPDATE provider_tokens SET revoked_at = now() WHERE provider_id = ${a.providerId} AND revoked_at IS NULL`.execute(trx)
      return { token: await mint(trx, a) }
    })
  }

  /**
   * A bearer-and-key admission of a pinned id: optionally rotate the key (a generation
   * compare-and-set), and renew the bearer as `renewal` says. `key` must still be valid for it:
   * the current key, or for a plain connect the previous one within its window.
   */
  connect(a: {
    providerId: string
    name: string
    key: string
    tokenId: string
    renewal: TokenRenewal
    now: number
    ttlMs: number
    graceMs: number
    rotation: { generation: number; nextKey: string; previousValidMs: number } | null
    /**
     * The pin's generation when the caller knows the pin it decided on is still the pin (no
     * identity write since it was read, on one node: writeEpoch); null to check it again here.
     */
    unchangedGeneration: number | null
  }): Promise<Written<{ token: IssuedToken | null; generation: number }> | Refused> {
    if (a.renewal === 'keep' && a.rotation === null) {
      return a.unchangedGeneration === null ? this.check(a) : Promise.resolve({ ok: true, token: null, generation: a.unchangedGeneration })
    }
    return this.tx(async (trx) => {
      const at = new Date(a.now)
      let generation: number
      if (a.rotation !== null) {
        const r = await sql<{ generation: number }>`
          UPDATE provider_identity_keys
          SET previous_key = public_key, previous_valid_until = ${new Date(a.now + a.rotation.previousValidMs)},
              public_key = ${a.rotation.nextKey}, generation = generation + 1, rotated_at = now()
          WHERE provider_id = ${a.providerId} AND generation = ${a.rotation.generation} AND public_key = ${a.key} AND revoked_at IS NULL
          RETURNING generation
        `.execute(trx)
        if (r.rows.length === 0) throw new Refusal('key_changed')
        generation = Number(r.rows[0]!.generation)
      } else {
        const r = await sql<{ generation: number }>`
          SELECT generation FROM provider_identity_keys
          WHERE provider_id = ${a.providerId} AND revoked_at IS NULL
            AND (public_key = ${a.key} OR (previous_key = ${a.key} AND previous_valid_until > ${at}))
          FOR SHARE
        `.execute(trx)
        if (r.rows.length === 0) throw new Refusal('key_changed')
        generation = Number(r.rows[0]!.generation)
      }
      if (a.renewal === 'keep') return { token: null, generation }
      if (a.renewal === 'supersede') {
        const r = await sql`
          UPDATE provider_tokens SET grace_until = ${new Date(a.now + a.graceMs)}
          WHERE id = ${a.tokenId} AND provider_id = ${a.providerId} AND revoked_at IS NULL AND grace_until IS NULL
        `.execute(trx)
        if (Number(r.numAffectedRows ?? 0) !== 1) throw new Refusal('token_changed')
      } else {
        // The presented token is in grace and its successor never reached this provider (the
        // cleartext is not stored, so it cannot be sent again): revoke the successor, mint another.
        const r = await sql`
          SELECT 1 FROM provider_tokens WHERE id = ${a.tokenId} AND revoked_at IS NULL AND grace_until > ${at} FOR UPDATE
        `.execute(trx)
        if (r.rows.length === 0) throw new Refusal('token_changed')
        await sql`UPDATE provider_tokens SET revoked_at = now() WHERE provider_id = ${a.providerId} AND revoked_at IS NULL AND grace_until IS NULL`.execute(trx)
      }
      return { token: await mint(trx, a), generation }
    })
  }

  /**
   * The common case, a connect that writes nothing: one guarded read, no transaction, so a
   * v2 connect costs one statement more than a v1 bearer connect. It re-checks, under the
   * admission lock, what the upgrade read with the token: the key is still valid and the id
   * was not revoked since.
   */
  private async check(a: { providerId: string; key: string; now: number }): Promise<Written<{ token: null; generation: number }> | Refused> {
    const r = await this.run(() =>
      sql<{ generation: number }>`
        SELECT generation FROM provider_identity_keys
        WHERE provider_id = ${a.providerId} AND revoked_at IS NULL
          AND (public_key = ${a.key} OR (previous_key = ${a.key} AND previous_valid_until > ${new Date(a.now)}))
      `.execute(this.db.kysely),
    )
    const row = r.rows[0]
    return row === undefined ? { ok: false, why: 'key_changed' } : { ok: true, token: null, generation: Number(row.generation) }
  }

  /** revoke-identity: blocks the id (no connect, no recovery) and revokes its tokens. Idempotent. */
  async revoke(providerId: string): Promise<{ revokedTokens: number; alreadyRevoked: boolean }> {
    checkId(providerId)
    const out = await this.tx(async (trx) => {
      const k = await sql<{ was: Date | null }>`SELECT revoked_at AS was FROM provider_identity_keys WHERE provider_id = ${providerId} FOR UPDATE`.execute(trx)
      if (k.rows.length === 0) throw new Refusal('key_changed')
      await sql`UPDATE provider_identity_keys SET revoked_at = now() WHERE provider_id = ${providerId} AND revoked_at IS NULL`.execute(trx)
      const t = await sql`UPDATE provider_tokens SET revoked_at = now() WHERE provider_id = ${providerId} AND revoked_at IS NULL`.execute(trx)
      return { revokedTokens: Number(t.numAffectedRows ?? 0), alreadyRevoked: k.rows[0]!.was !== null }
    })
    if (!out.ok) throw new IdentityNotPinnedError()
    return { revokedTokens: out.revokedTokens, alreadyRevoked: out.alreadyRevoked }
  }

  /** reset-identity: deletes the pin and revokes the id's tokens, so the id can enroll afresh. */
  async reset(providerId: string): Promise<{ revokedTokens: number }> {
    checkId(providerId)
    const out = await this.tx(async (trx) => {
      const k = await sql`DELETE FROM provider_identity_keys WHERE provider_id = ${providerId} RETURNING provider_id`.execute(trx)
      if (k.rows.length === 0) throw new Refusal('key_changed')
      const t = await sql`UPDATE provider_tokens SET revoked_at = now() WHERE provider_id = ${providerId} AND revoked_at IS NULL`.execute(trx)
      return { revokedTokens: Number(t.numAffectedRows ?? 0) }
    })
    if (!out.ok) throw new IdentityNotPinnedError()
    return { revokedTokens: out.revokedTokens }
  }

  async list(): Promise<IdentityInfo[]> {
    const rows = await this.run(() => this.db.kysely.selectFrom('provider_identity_keys').selectAll().orderBy('provider_id').execute())
    return rows.map((r) => ({
      ...pinnedKeyOf(r),
      createdAt: new Date(r.created_at),
      rotatedAt: r.rotated_at === null ? null : new Date(r.rotated_at),
      revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
    }))
  }

  /** One transaction, bounded like every store call; a Refusal rolls back and comes back as Refused. */
  private async tx<T extends object>(fn: (trx: Transaction<DatabaseSchema>) => Promise<T>): Promise<Written<T> | Refused> {
    try {
      const value = await storeCall(
        this.timeoutMs,
        () => this.db.kysely.transaction().execute(fn),
        (err) => (err instanceof Refusal ? err : isUniqueViolation(err, KEY_PKEY) || isUniqueViolation(err, ONE_ACTIVE_INDEX) ? new Refusal('race') : null),
      )
      return { ok: true, ...value }
    } catch (err) {
      if (err instanceof Refusal) return { ok: false, why: err.why }
      throw err
    } finally {
      // After the transaction settled: a bearer whose upgrade read the count before this commit
      // sees a new count, one that read it after sees the write in its own statement.
      this.writeEpoch++
    }
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    return storeCall(this.timeoutMs, fn)
  }
}

/** A token for a key-pinned id: it expires after the TTL. */
async function mint(trx: Transaction<DatabaseSchema>, a: { providerId: string; name?: string; now: number; ttlMs: number }): Promise<IssuedToken> {
  const token = generateToken()
  await trx
    .insertInto('provider_tokens')
    .values({
      token_hash: hashToken(token),
      token_prefix: tokenPrefix(token),
      provider_id: a.providerId,
      provider_name: boundedName(a.name ?? '', a.providerId),
      origin: 'self_minted',
      expires_at: new Date(a.now + a.ttlMs),
    })
    .execute()
  return { token, tokenPrefix: tokenPrefix(token), providerId: a.providerId }
}

function checkId(providerId: string): void {
  if (!PROVIDER_ID_RE.test(providerId)) throw new InvalidProviderIdError()
}
