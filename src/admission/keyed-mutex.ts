/**
 * Runs async sections one at a time per key. Admission for one provider_id holds its key from
 * the first store step until the Registry has the outcome, so two hellos for one id never decide
 * on the same registry state. Keys are dropped when idle, so memory is bounded by live contention.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>()

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((resolve) => (release = resolve))
    const tail = prev.then(() => mine)
    this.tails.set(key, tail)
    await prev
    try {
      return await fn()
    } finally {
      release()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  get size(): number {
    return this.tails.size
  }
}
