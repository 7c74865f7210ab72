import type { StatsResponse } from '@poolcoord/protocol'

/**
 * Buyer requests and errors per time bucket over the last minutes, for the dashboard's rate
 * chart (GET /admin/stats). Fixed memory: a ring of counters, indexed by bucket number, so a
 * record is two array writes and old buckets are overwritten, never collected. Pure: callers
 * pass the time.
 */
export class RequestHistory {
  private readonly requests: Uint32Array
  private readonly errors: Uint32Array
  /** The bucket number each slot currently holds. */
  private readonly slotOf: Float64Array

  constructor(
    private readonly bucketMs = 10_000,
    private readonly size = 90,
  ) {
    this.requests = new Uint32Array(size)
    this.errors = new Uint32Array(size)
    this.slotOf = new Float64Array(size).fill(-1)
  }

  /** `failed`: the request ended with an error code (not complete, not a buyer who left). */
  record(now: number, failed: boolean): void {
    const b = Math.floor(now / this.bucketMs)
    const i = b % this.size
    if (this.slotOf[i] !== b) {
      this.slotOf[i] = b
      this.requests[i] = 0
      this.errors[i] = 0
    }
    this.requests[i]!++
    if (failed) this.errors[i]!++
  }

  /** The last `size` buckets, oldest first, the current (partial) one last. */
  snapshot(now: number): StatsResponse {
    const last = Math.floor(now / this.bucketMs)
    const buckets: StatsResponse['buckets'] = []
    for (let b = last - this.size + 1; b <= last; b++) {
      const i = b % this.size
      const held = this.slotOf[i] === b
      buckets.push({ start: new Date(b * this.bucketMs).toISOString(), requests: held ? this.requests[i]! : 0, errors: held ? this.errors[i]! : 0 })
    }
    return { bucket_s: this.bucketMs / 1000, buckets }
  }
}
