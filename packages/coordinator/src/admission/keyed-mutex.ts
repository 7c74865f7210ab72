import { InFlightTable } from '@poolcoord/protocol'

/**
 * Runs async sections one at a time per key. Admission for one provider_id holds its key from
 * the first store step until the Registry has the outcome, so two hellos for one id never decide
 * on the same registry state. Keys are dropped when idle, and the number of sections queued per
 * key is capped, so memory and waiting are bounded even when one id is flooded.
 */
export class KeyedMutex {
  /** An InFlightTable, not a Map: a key comes and goes with every admission (see there). */
  private readonly keys = new InFlightTable<{ tail: Promise<void>; waiting: number }>()

  constructor(private readonly maxQueuedPerKey = Number.POSITIVE_INFINITY) {}

  /** Runs fn once the key is free; resolves to `busy` at once if too many already wait. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; busy: true }> {
    let entry = this.keys.get(key)
    // Only a caller that finds the key taken waits; the first one runs at once.
    const waits = entry !== undefined
    if (entry === undefined) {
      entry = { tail: Promise.resolve(), waiting: 0 }
      this.keys.set(key, entry)
    } else if (entry.waiting >= this.maxQueuedPerKey) {
      return { ok: false, busy: true }
    }
    const prev = entry.tail
    let release!: () => void
    const mine = new Promise<void>((resolve) => (release = resolve))
    const tail = prev.then(() => mine)
    entry.tail = tail
    if (waits) entry.waiting++
    await prev
    if (waits) entry.waiting--
    try {
      return { ok: true, value: await fn() }
    } finally {
      release()
      if (entry.tail === tail) this.keys.delete(key)
    }
  }

  /** Callers queued behind the current holder of `key`. */
  waiting(key: string): number {
    return this.keys.get(key)?.waiting ?? 0
  }

  get size(): number {
    return this.keys.size
  }
}
