import type { Database } from '../db/database.js'
import { storeCall } from '../db/store-call.js'

export interface Cordon {
  providerId: string
  reason: string
  createdAt: Date
}

/** Longest cordon reason kept; the column's CHECK says the same. */
export const MAX_CORDON_REASON = 200

/**
 * Cordoned provider ids, in the database so that a cordon outlives reconnects and restarts.
 * One statement per operation, bounded like the token store's: a store error fails the
 * operator's request, never admission.
 */
export class CordonStore {
  constructor(
    private readonly db: Database,
    private readonly timeoutMs = 5000,
  ) {}

  /** Idempotent: cordoning a cordoned id keeps its first time and updates the reason. */
  async cordon(providerId: string, reason: string): Promise<void> {
    await storeCall(this.timeoutMs, () =>
      this.db.kysely
        .insertInto('provider_cordons')
        .values({ provider_id: providerId, reason: reason.slice(0, MAX_CORDON_REASON) })
        .onConflict((oc) => oc.column('provider_id').doUpdateSet({ reason: reason.slice(0, MAX_CORDON_REASON) }))
        .execute(),
    )
  }

  /** True when the id was cordoned. */
  async uncordon(providerId: string): Promise<boolean> {
    const rows = await storeCall(this.timeoutMs, () =>
      this.db.kysely.deleteFrom('provider_cordons').where('provider_id', '=', providerId).returning('provider_id').execute(),
    )
    return rows.length > 0
  }

  async list(): Promise<Cordon[]> {
    const rows = await storeCall(this.timeoutMs, () =>
      this.db.kysely.selectFrom('provider_cordons').select(['provider_id', 'reason', 'created_at']).orderBy('provider_id').execute(),
    )
    return rows.map((r) => ({ providerId: r.provider_id, reason: r.reason, createdAt: new Date(r.created_at) }))
  }
}
