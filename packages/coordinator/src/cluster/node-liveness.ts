import { EventEmitter } from 'node:events'
import { hostname } from 'node:os'
import type { KV } from '@nats-io/kv'
import { CoordinatorError, NatsUnavailableError } from '../errors.js'
import type { Logger } from '../logger.js'
import { FenceClock, checkFenceTiming, defaultFenceTiming, type FenceTiming } from './fence-clock.js'
import type { ClusterHealth, FenceReason, FencedEvent, UnfencedEvent } from './liveness-events.js'
import type { NatsLink, NatsLinkStatus } from './nats-link.js'
import { newIncarnation } from './node-id.js'
import { claimAtStart, claimNodeKey, readNodeKey } from './node-key.js'
import { encodeNodeRecord, isWrongLastSequence, nodeKey, openNodesBucket, type NodeEntry } from './nodes-bucket.js'
import { NodesPoller, type NodesView } from './nodes-poller.js'

export type { NodesView } from './nodes-poller.js'
export type { ClusterHealth, FenceReason, FencedEvent, UnfencedEvent } from './liveness-events.js'

export interface NodeLivenessOptions {
  link: NatsLink
  nodeId: string
  log: Logger
  timing?: FenceTiming
  /** Monotonic milliseconds: performance.now() unless a test says otherwise. */
  now?: () => number
}

/**
 * This node's liveness key in pc_nodes, renewed every `renewIntervalMs` by a compare-and-set on
 * its last revision, and the self-fence that follows from it (fence-clock.ts has the timing
 * argument). `isLive(now)` is what every dispatch and admission asks: one clock read, true only
 * before the deadline of the last successful renewal. When the deadline passes (NATS gone or
 * hung), the key is lost, or another process holds the node id, the node fences: `fenced` is
 * emitted, and the caller stops routing and closes its provider sockets with 4011. It unfences
 * by itself, under a new incarnation, once a renewal succeeds again.
 */
export class NodeLiveness extends EventEmitter<{ fenced: [FencedEvent]; unfenced: [UnfencedEvent]; nodes: [NodesView] }> {
  readonly nodeId: string
  readonly #link: NatsLink
  readonly #kv: KV
  readonly #log: Logger
  readonly #now: () => number
  readonly #clock: FenceClock
  readonly #key: string
  #incarnation = newIncarnation()
  /** Every incarnation this process wrote: finding one of them in the key is not a conflict. */
  readonly #mine = new Set<string>([this.#incarnation])
  #startedAt = new Date().toISOString()
  /** Revision of our key as last written by us; null when we do not hold it. */
  #revision: number | null = null
  #fence: { reason: FenceReason; at: number } | null = null
  #conflictLogged: string | null = null
  #failing = false
  #stopped = false
  #stopping: Promise<void> | null = null
  readonly #poller: NodesPoller
  #fenceTimer: NodeJS.Timeout | undefined
  /** Ends the current wait of the renewal loop early. */
  #wake: (() => void) | null = null
  #renewing: Promise<void> = Promise.resolve()
  readonly #onStatus = (s: NatsLinkStatus): void => {
    // Back on NATS: renew now rather than at the next tick, to unfence sooner.
    if (s === 'connected') this.#wake?.()
  }

  private constructor(opts: NodeLivenessOptions, kv: KV, timing: FenceTiming) {
    super()
    this.nodeId = opts.nodeId
    this.#link = opts.link
    this.#kv = kv
    this.#log = opts.log
    this.#now = opts.now ?? (() => performance.now())
    this.#clock = new FenceClock(timing)
    this.#key = nodeKey(opts.nodeId)
    this.#poller = new NodesPoller(opts.link, kv, timing.renewIntervalMs, opts.log, this.#now)
    this.#poller.on('nodes', (view) => this.emit('nodes', view))
  }

  /**
   * Claims the node key and starts renewing. If another live process holds this node id, the
   * start is refused (ConfigError); if an earlier incarnation's key is still there but no longer
   * renewed (a crash), waits for it to expire, at most one TTL.
   */
  static async start(opts: NodeLivenessOptions): Promise<NodeLiveness> {
    const timing = opts.timing ?? defaultFenceTiming
    checkFenceTiming(timing)
    try {
      const node = new NodeLiveness(opts, await openNodesBucket(opts.link, timing, opts.log), timing)
      await node.#claimAtStart()
      node.#run()
      return node
    } catch (err) {
      throw err instanceof CoordinatorError ? err : new NatsUnavailableError(opts.link.servers, err)
    }
  }

  get incarnation(): string {
    return this.#incarnation
  }

  get lastRenewalSentAt(): number | null {
    return this.#clock.lastRenewalSentAt
  }

  get deadline(): number {
    return this.#clock.deadline()
  }

  /** May this node route now? One clock read; false once stopped. */
  isLive(now: number = this.#now()): boolean {
    return this.#fence === null && !this.#stopped && this.#clock.isLive(now)
  }

  /** Node keys seen by the last poll, every renewal interval. NATS 2.9 sends no event when a key expires, so only polling sees a node die. */
  liveNodes(): NodesView {
    return this.#poller.view
  }

  health(): ClusterHealth {
    return {
      node_id: this.nodeId,
      incarnation: this.#incarnation,
      state: this.#stopped ? 'stopped' : this.isLive() ? 'live' : 'fenced',
      fence_reason: this.#fence?.reason ?? null,
      nats: this.#link.status,
      live_nodes: this.#poller.view.nodes.size,
    }
  }

  /** Stops renewing and deletes the key (a clean leave: the others see it at their next poll). Never throws. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop(): Promise<void> {
    this.#stopped = true
    this.#clock.revoke(this.#now())
    clearTimeout(this.#fenceTimer)
    this.#link.off('status', this.#onStatus)
    this.#poller.stop()
    this.#wake?.()
    // A renewal in flight may still move the revision; it gets one interval, not its whole timeout.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#renewing, new Promise((resolve) => (timer = setTimeout(resolve, this.#clock.timing.renewIntervalMs)))])
    clearTimeout(timer)
    if (this.#revision === null) return
    if (this.#link.status !== 'connected') {
      this.#log.warn({ event: 'node.leave_failed', node_id: this.nodeId, nats: this.#link.status }, 'NATS is unreachable; this node key expires by its TTL')
      return
    }
    try {
      // Only our own write is deleted: a successor's key has another revision.
      await this.#kv.delete(this.#key, { previousSeq: this.#revision })
      this.#log.info({ event: 'node.left', node_id: this.nodeId, incarnation: this.#incarnation }, 'deleted this node key')
    } catch (err) {
      this.#log.warn({ event: 'node.leave_failed', node_id: this.nodeId, err }, 'could not delete this node key; it expires by its TTL')
    }
  }

  async #claimAtStart(): Promise<void> {
    const { revision, sentAt } = await claimAtStart({
      nodeId: this.nodeId,
      claim: () => this.#claim(),
      now: this.#now,
      timing: this.#clock.timing,
      log: this.#log,
    })
    this.#revision = revision
    this.#clock.renewed(sentAt)
    this.#armFenceTimer()
    this.#log.info({ event: 'node.joined', node_id: this.nodeId, incarnation: this.#incarnation }, 'this node is live in the cluster')
  }

  #claim(): ReturnType<typeof claimNodeKey> {
    return claimNodeKey(this.#kv, this.#key, this.#record(), (inc) => this.#mine.has(inc), this.#writeTimeout())
  }

  #run(): void {
    this.#link.on('status', this.#onStatus)
    this.#poller.start()
    this.#renewing = this.#renewLoop()
  }

  async #renewLoop(): Promise<void> {
    const interval = this.#clock.timing.renewIntervalMs
    while (!this.#stopped) {
      const started = this.#now()
      await this.#renewOnce()
      if (!this.#stopped) await this.#sleep(started + interval - this.#now())
    }
  }

  async #renewOnce(): Promise<void> {
    try {
      if (this.#revision !== null) {
        const sentAt = this.#now()
        const incarnation = this.#incarnation
        try {
          this.#revision = await this.#kv.put(this.#key, this.#record(), { previousSeq: this.#revision, timeout: this.#writeTimeout() })
          this.#succeeded(sentAt, incarnation)
          return
        } catch (err) {
          if (!isWrongLastSequence(err)) throw err
        }
        if (this.#stopped) return
        const current = await readNodeKey(this.#kv, this.#key)
        if (current !== null && current.record !== null && this.#mine.has(current.record.incarnation)) {
          // One of our writes landed after its reply was given up (a hung server): not a conflict.
          this.#log.debug({ event: 'node.revision_adopted', node_id: this.nodeId, revision: current.revision }, 'an unacknowledged renewal of ours had landed')
          this.#revision = current.revision
          return
        }
        this.#revision = null
        this.#fenceNow(current === null ? 'key_lost' : 'conflict')
        if (current !== null) return this.#heldBy(current)
      }
      const sentAt = this.#now()
      const incarnation = this.#incarnation
      const claim = await this.#claim()
      if ('holder' in claim) return this.#heldBy(claim.holder)
      this.#revision = claim.revision
      this.#succeeded(sentAt, incarnation)
    } catch (err) {
      if (this.#stopped) return
      if (!this.#failing) this.#log.warn({ event: 'node.renew_failed', node_id: this.nodeId, err }, 'could not renew this node key; retrying')
      this.#failing = true
    }
  }

  #succeeded(sentAt: number, incarnation: string): void {
    if (this.#stopped) return
    this.#clock.renewed(sentAt)
    if (this.#failing) this.#log.info({ event: 'node.renew_recovered', node_id: this.nodeId }, 'renewing this node key again')
    this.#failing = false
    const now = this.#now()
    // A reply to a write from before the fence carries the old incarnation: it never unfences.
    if (this.#fence !== null && incarnation === this.#incarnation && this.#clock.isLive(now)) {
      const event: UnfencedEvent = { at: now, incarnation, fencedForMs: now - this.#fence.at }
      this.#fence = null
      this.#conflictLogged = null
      this.#log.info({ event: 'node.unfenced', node_id: this.nodeId, incarnation, fenced_for_ms: Math.round(event.fencedForMs) }, 'this node routes again')
      this.emit('unfenced', event)
    }
    this.#armFenceTimer()
  }

  #fenceNow(reason: FenceReason): void {
    if (this.#fence !== null || this.#stopped) return
    const at = this.#now()
    const event: FencedEvent = { reason, at, lastRenewalSentAt: this.#clock.lastRenewalSentAt, deadline: this.#clock.deadline() }
    this.#clock.revoke(at)
    clearTimeout(this.#fenceTimer)
    this.#fence = { reason, at }
    // The old incarnation ends here: its sockets are closed, so the next write announces a new one.
    this.#incarnation = newIncarnation()
    this.#mine.add(this.#incarnation)
    this.#startedAt = new Date().toISOString()
    this.#log.warn({ event: 'node.fenced', node_id: this.nodeId, reason }, 'this node stops routing and closes its provider sockets until it renews its key')
    this.emit('fenced', event)
  }

  /** Another process holds our node id: stay fenced, say so loudly (once per holder), and keep trying to claim it back when it goes. */
  #heldBy(holder: NodeEntry): void {
    if (this.#fence !== null) this.#fence = { ...this.#fence, reason: 'conflict' }
    const who = holder.record?.incarnation ?? `revision ${holder.revision}`
    if (this.#conflictLogged === who) return
    this.#conflictLogged = who
    this.#log.error(
      { event: 'node.id_conflict', node_id: this.nodeId, holder: holder.record },
      'another coordinator process holds this node id; this node stays fenced until it goes away. Give each coordinator its own COORD_NODE_ID and data dir',
    )
  }

  #armFenceTimer(): void {
    clearTimeout(this.#fenceTimer)
    if (this.#stopped || this.#fence !== null) return
    const wait = this.#clock.deadline() - this.#now()
    this.#fenceTimer = setTimeout(
      () => {
        if (this.#clock.isLive(this.#now())) this.#armFenceTimer()
        else this.#fenceNow('deadline')
      },
      Math.max(0, Math.ceil(wait)),
    )
  }

  /** Resolves after `ms`, or early through #wake (stop(), NATS back). */
  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        if (this.#wake === done) this.#wake = null
        resolve()
      }
      const timer = setTimeout(done, Math.max(0, ms))
      this.#wake = done
    })
  }

  #record(): string {
    return encodeNodeRecord({ v: 1, node_id: this.nodeId, incarnation: this.#incarnation, started_at: this.#startedAt, host: hostname(), pid: process.pid })
  }

  /** A renewal that hangs is given up after two intervals, so a hung server is retried while the deadline still runs. */
  #writeTimeout(): number {
    return 2 * this.#clock.timing.renewIntervalMs
  }
}
