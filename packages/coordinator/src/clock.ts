/** Milliseconds since the epoch. Injected so that liveness and expiry are testable without sleeps. */
export interface Clock {
  now(): number
}

/** Epoch-based but monotonic: a wall-clock jump must not make every session look idle at once. */
export const systemClock: Clock = { now: () => performance.timeOrigin + performance.now() }

/** A clock that only moves when told to: for tests and benchmarks. */
export class ManualClock implements Clock {
  constructor(private ms = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.ms
  }
  advance(ms: number): void {
    this.ms += ms
  }
}
