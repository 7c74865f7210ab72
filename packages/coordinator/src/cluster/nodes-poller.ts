import { EventEmitter } from 'node:events'
import type { KV } from '@nats-io/kv'
import type { Logger } from '../logger.js'
import type { NatsLink } from './nats-link.js'
import { readNodes, type NodeRecord } from './nodes-bucket.js'

export interface NodesView {
  /** When the last successful poll finished (monotonic); null before the first. */
  takenAt: number | null
  /** When that poll started reading: a key written before this moment and still live is in `nodes`. */
  askedAt: number | null
  nodes: ReadonlyMap<string, NodeRecord & { revision: number }>
}

/**
 * Reads every node key in pc_nodes, once per interval. NATS 2.9 sends no watch event when a TTL
 * removes a key, so polling is the only way to see a node die. `nodes` is emitted when the set of
 * node/incarnation pairs changes; a failed poll keeps the last view (its `takenAt` tells its age).
 */
export class NodesPoller extends EventEmitter<{ nodes: [NodesView] }> {
  #view: NodesView = { takenAt: null, askedAt: null, nodes: new Map() }
  #timer: NodeJS.Timeout | undefined
  #stopped = false

  constructor(
    private readonly link: NatsLink,
    private readonly kv: KV,
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    super()
  }

  get view(): NodesView {
    return this.#view
  }

  start(): void {
    this.#tick()
  }

  /** A poll in flight ends on its own (its requests are bounded) and changes nothing after this. */
  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }

  #tick(): void {
    const started = this.now()
    void this.#poll().finally(() => {
      if (!this.#stopped) this.#timer = setTimeout(() => this.#tick(), Math.max(0, started + this.intervalMs - this.now()))
    })
  }

  async #poll(): Promise<void> {
    try {
      const askedAt = this.now()
      const nodes = await readNodes(this.link, this.kv)
      if (this.#stopped) return
      const view: NodesView = { takenAt: this.now(), askedAt, nodes: new Map([...nodes].map(([id, e]) => [id, { ...e.record, revision: e.revision }])) }
      const changed = membership(view) !== membership(this.#view)
      this.#view = view
      if (changed) this.emit('nodes', view)
    } catch (err) {
      this.log.debug({ event: 'node.poll_failed', err }, 'could not read the node keys')
    }
  }
}

function membership(view: NodesView): string {
  return [...view.nodes.values()]
    .map((n) => `${n.node_id}/${n.incarnation}`)
    .sort()
    .join(',')
}
