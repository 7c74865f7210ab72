import type { Registry as PromRegistry } from 'prom-client'

/**
 * Counters and histograms for the buyer request path, exported through the same prom-client
 * registry and in the same text format as prom-client's own. Why not prom-client's: its `inc`
 * and `observe` hash and validate the label object on every call (and `labels()` only binds the
 * same work), about 10 µs of a ~90 µs request at the measurement (issue 16). Here a
 * label set is looked up once per call in a Map keyed by its values, and what a call does is
 * an add. Label values must come from closed sets, as everywhere in metrics.ts.
 */
interface Child {
  readonly labels: Record<string, string>
}

abstract class HotMetric<C extends Child> {
  readonly aggregator = 'sum'
  protected readonly children = new Map<string, C>()

  constructor(
    registry: PromRegistry,
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
  ) {
    // The registry takes any object with a name and get(); it formats what get() returns.
    registry.registerMetric(this as never)
  }

  /** The child for these label values (one or two, in labelNames order): made on first use. */
  protected child(a: string, b?: string): C {
    const key = b === undefined ? a : `${a}\u0000${b}`
    let c = this.children.get(key)
    if (c === undefined) {
      const values = b === undefined ? [a] : [a, b]
      if (values.length !== this.labelNames.length) throw new Error(`${this.name}: ${this.labelNames.length} label values expected`)
      const labels: Record<string, string> = {}
      this.labelNames.forEach((n, i) => (labels[n] = values[i] as string))
      c = this.make(labels)
      this.children.set(key, c)
    }
    return c
  }

  protected abstract make(labels: Record<string, string>): C
}

interface CounterChild extends Child {
  value: number
}

export class HotCounter extends HotMetric<CounterChild> {
  readonly type = 'counter'

  inc(a: string, b?: string): void {
    this.child(a, b).value++
  }

  get() {
    const values = [...this.children.values()].map((c) => ({ labels: c.labels, value: c.value }))
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  protected make(labels: Record<string, string>): CounterChild {
    return { labels, value: 0 }
  }
}

interface HistogramChild extends Child {
  /** Observations per bucket (not cumulative); the last slot is past the largest bound. */
  readonly counts: Float64Array
  sum: number
  count: number
}

export class HotHistogram extends HotMetric<HistogramChild> {
  readonly type = 'histogram'

  constructor(
    registry: PromRegistry,
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    super(registry, name, help, labelNames)
  }

  observe(value: number, a: string, b?: string): void {
    if (!Number.isFinite(value)) return
    const c = this.child(a, b)
    let i = 0
    while (i < this.bounds.length && value > (this.bounds[i] as number)) i++
    c.counts[i]!++
    c.sum += value
    c.count++
  }

  /** As prom-client writes a histogram: cumulative buckets with `le`, then +Inf, _sum and _count. */
  get() {
    const values: Array<{ labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number; metricName: string }> = []
    for (const c of this.children.values()) {
      let acc = 0
      this.bounds.forEach((le, i) => {
        acc += c.counts[i] as number
        values.push({ labels: { le }, sharedLabels: c.labels, value: acc, metricName: `${this.name}_bucket` })
      })
      values.push({ labels: { le: '+Inf' }, sharedLabels: c.labels, value: c.count, metricName: `${this.name}_bucket` })
      values.push({ labels: {}, sharedLabels: c.labels, value: c.sum, metricName: `${this.name}_sum` })
      values.push({ labels: {}, sharedLabels: c.labels, value: c.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  protected make(labels: Record<string, string>): HistogramChild {
    return { labels, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }
  }
}
