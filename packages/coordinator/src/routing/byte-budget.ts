/**
 * A shared allowance of bytes. Every buyer request reserves what it holds in memory (a held
 * non-streaming answer, a streaming backlog), so that many requests at their individual limits
 * together stay under one process-wide bound.
 */
export class ByteBudget {
  private used = 0

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used
  }

  /** A per-request reservation that can grow, shrink and be released. */
  reservation(): Reservation {
    let held = 0
    return {
      resize: (n) => {
        const delta = n - held
        if (delta > 0 && this.used + delta > this.limit) return false
        this.used += delta
        held = n
        return true
      },
      hold: (n) => {
        this.used += n - held
        held = n
      },
      release: () => {
        this.used -= held
        held = 0
      },
    }
  }
}

export interface Reservation {
  /** Sets the reservation to n bytes; false, changing nothing, if that would pass the limit. */
  resize(n: number): boolean
  /** Sets the reservation to n bytes even past the limit: for bytes already in memory. */
  hold(n: number): void
  release(): void
}
