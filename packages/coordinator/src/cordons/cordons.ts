import { StoreUnavailableError } from '../errors.js'
import type { Cordon, CordonStore } from './cordon-store.js'

/** What a cordon changes in the live pool: the provider's session, if it has one. */
export interface CordonTarget {
  setCordoned(providerId: string, cordoned: boolean): boolean
}

/**
 * The cordoned ids, kept in the database (CordonStore) and mirrored in memory so that admission
 * asks no extra query: a session is registered with `cordoned` read from this set in the same
 * synchronous step, so no admission can slip between a cordon and its effect.
 *
 * The two copies must not drift. Operations run one at a time, in order. A cordon takes effect
 * in memory before its write, and an uncordon only after its delete committed, so while the
 * store's answer is unknown the provider stays out: the safe side. A write that failed or timed
 * out may still commit later, so after any failure the set is read back from the store (retried
 * until it answers) and applied to the live pool.
 */
export class Cordons {
  private ids = new Set<string>()
  private tail: Promise<unknown> = Promise.resolve()
  private reconciling = false
  /** Failed writes that may still be running in the store. */
  private readonly unsettled = new Set<Promise<void>>()

  constructor(private readonly store: CordonStore) {}

  /** Reads every cordon from the store; at start-up, before the first admission. */
  async load(): Promise<void> {
    this.ids = new Set((await this.store.list()).map((c) => c.providerId))
  }

  /**
   * Reads the set again and applies it to the live pool: cluster mode, after another node
   * changed it (cluster/cluster-ops.ts). Queued behind this node's own operations.
   */
  refresh(pool: CordonTarget): Promise<void> {
    return this.serial(async () => {
      const stored = new Set((await this.store.list()).map((c) => c.providerId))
      for (const id of this.ids) if (!stored.has(id)) pool.setCordoned(id, false)
      for (const id of stored) pool.setCordoned(id, true)
      this.ids = stored
    })
  }

  has(providerId: string): boolean {
    return this.ids.has(providerId)
  }

  /** Stores the cordon and applies it. Returns whether a live session was cordoned. */
  cordon(providerId: string, reason: string, pool: CordonTarget): Promise<boolean> {
    return this.serial(async () => {
      this.ids.add(providerId)
      const live = pool.setCordoned(providerId, true)
      await this.write(() => this.store.cordon(providerId, reason), pool)
      return live
    })
  }

  /** Lifts the cordon. Returns whether a live session was released. */
  uncordon(providerId: string, pool: CordonTarget): Promise<boolean> {
    return this.serial(async () => {
      await this.write(() => this.store.uncordon(providerId), pool)
      this.ids.delete(providerId)
      return pool.setCordoned(providerId, false)
    })
  }

  list(): Promise<Cordon[]> {
    return this.store.list()
  }

  private async write<T>(op: () => Promise<T>, pool: CordonTarget): Promise<T> {
    try {
      return await op()
    } catch (err) {
      // A timed-out write may still commit: read the store back only once it has finished.
      this.reconcile(pool, err instanceof StoreUnavailableError ? err.settled : Promise.resolve())
      throw err
    }
  }

  /** Reads the store's set back until it answers, then makes memory and the pool match it. */
  private reconcile(pool: CordonTarget, after: Promise<void>): void {
    this.unsettled.add(after)
    void after.then(() => this.unsettled.delete(after))
    if (this.reconciling) return
    this.reconciling = true
    void (async () => {
      for (let delayMs = 250; ; delayMs = Math.min(2 * delayMs, 30_000)) {
        // Every failed write, this one's and any later one's, has finished before the read.
        while (this.unsettled.size > 0) await Promise.all(this.unsettled)
        // Queued behind the failed operation, so no write is in flight while the set is read.
        const done = await this.serial(async () => {
          const stored = new Set((await this.store.list()).map((c) => c.providerId))
          for (const id of this.ids) if (!stored.has(id)) pool.setCordoned(id, false)
          for (const id of stored) pool.setCordoned(id, true)
          this.ids = stored
        }).then(
          () => true,
          () => false,
        )
        if (done) break
        await new Promise((resolve) => setTimeout(resolve, delayMs).unref())
      }
      this.reconciling = false
    })()
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn)
    this.tail = run.catch(() => undefined)
    return run
  }
}
