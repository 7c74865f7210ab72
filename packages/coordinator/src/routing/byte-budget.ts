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
    return new BudgetReservation(this)
  }

  /** For BudgetReservation only: moves `delta` bytes in or out; false if `checked` and over the limit. */
  take(delta: number, checked: boolean): boolean {
    if (checked && delta > 0 && this.used + delta > this.limit) return false
    this.used += delta
    return true
  }
}

/** A class rather than three closures: every buyer request makes a few of these. */
class BudgetReservation implements Reservation {
  private held = 0

  constructor(private readonly budget: ByteBudget) {}

  resize(n: number): boolean {
    if (!this.budget.take(n - this.held, true)) return false
    this.held = n
    return true
  }

  hold(n: number): void {
    this.budget.take(n - this.held, false)
    this.held = n
  }

  release(): void {
    this.budget.take(-this.held, false)
    this.held = 0
  }
}

export interface Reservation {
  /** Sets the reservation to n bytes; false, changing nothing, if that would pass the limit. */
  resize(n: number): boolean
  /** Sets the reservation to n bytes even past the limit: for bytes already in memory. */
  hold(n: number): void
  release(): void
}
