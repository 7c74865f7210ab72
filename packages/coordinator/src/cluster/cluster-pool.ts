import { setTimeout as delay } from 'node:timers/promises'
import type { KV } from '@nats-io/kv'
import { Kvm } from '@nats-io/kv'
import type { Logger } from '../logger.js'
import { afterFailure, afterSuccess } from '../pool/provider-health.js'
import type { ProviderLink } from '../pool/provider-link.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { Registry } from '../pool/registry.js'
import type { SessionLease } from './lease-value.js'
import type { NatsLink } from './nats-link.js'
import type { NodesView } from './nodes-poller.js'
import { encodeSnapshot, parseSnapshot } from './pool-snapshot.js'

/** Memory storage: a snapshot is rewritten several times a second, and a restarted server needs none of them (each node publishes again). */
async function openPoolBucket(link: NatsLink): Promise<KV> {
  const replicas = link.nc.info?.cluster === undefined ? 1 : 3
  return new Kvm(link.js).create(POOL_BUCKET, { history: 1, replicas, storage: 'memory' })
}

/** The KV bucket of pool snapshots, `p.<node_id>`: each node's sessions, for the others' routing views. */
export const POOL_BUCKET = 'pc_pool'

export interface ClusterPoolDeps {
  link: NatsLink
  nodeId: string
  incarnation: () => string
  isLive: () => boolean
  registry: Registry<ProviderLink>
  /** Every lease as the watch last delivered it (lease-keeper.ts). */
  leases: ReadonlyMap<string, SessionLease>
  liveNodes: () => NodesView
  /** This node's copy of the cordon set, which may be ahead of another node's snapshot. */
  cordoned: (providerId: string) => boolean
  publishMs: number
  log: Logger
}

const EMPTY: readonly ProviderSession[] = Object.freeze([])

/**
 * The whole cluster's pool as this node sees it (specs/cluster.md §11): this node's sessions
 * from its Registry, and every other live node's from the snapshot it publishes in pc_pool.
 * Selection, /v1/models, /poolz and /healthz all read it.
 *
 * A row of another node is shown routable only while three sources agree: that node's latest
 * snapshot lists the session and does not say it waits for a handover; the node's incarnation is
 * live in the last poll of pc_nodes; and the provider_id's lease, as the watch delivered it, names
 * exactly that session, active. A provider_id has one lease, so this view never shows two
 * routable sessions for one id, however stale a snapshot is. A provider this node holds itself
 * hides any other node's row for the id: ours is current by construction, theirs can only be old.
 *
 * It is a hint: the owner re-checks every dispatch (remote-server.ts).
 */
export class ClusterPool {
  readonly #remote = new Map<string, { incarnation: string; sessions: ProviderSession[] }>()
  #list: ProviderSession[] = []
  #dirty = true
  #builtAt = -1
  #lastPublished: string | null = null
  #publishing = false
  #stopped = false
  readonly #timer: NodeJS.Timeout
  #stopWatch: (() => void) | null = null
  /** Bumped by resync(): a watch loop of an older generation stops instead of restarting itself. */
  #generation = 0

  private constructor(
    private readonly d: ClusterPoolDeps,
    private kv: KV,
  ) {
    this.#timer = setInterval(() => void this.#publish(), d.publishMs)
    this.#timer.unref()
  }

  static async open(d: ClusterPoolDeps): Promise<ClusterPool> {
    const pool = new ClusterPool(d, await openPoolBucket(d.link))
    await pool.#watch(pool.#generation)
    return pool
  }

  /**
   * NATS came back: the bucket may be gone with a restarted server (it is kept in memory), and
   * the watch may have ended. Open the bucket again, watch it afresh, and publish at once.
   */
  async resync(): Promise<void> {
    const generation = ++this.#generation
    this.#stopWatch?.()
    this.#lastPublished = null
    try {
      this.kv = await openPoolBucket(this.d.link)
      if (generation === this.#generation) await this.#watch(generation)
    } catch (err) {
      this.d.log.warn({ event: 'cluster.pool_resync_failed', err }, 'could not reopen the pool snapshot bucket; retrying on the next reconnect')
    }
  }

  /** Something the view is built from changed: a lease, the nodes' membership. */
  invalidate(): void {
    this.#dirty = true
  }

  /** Sessions a dispatch may pick: nothing at all while this node is fenced. */
  sessionList(): readonly ProviderSession[] {
    if (!this.d.isLive()) return EMPTY
    return this.all()
  }

  /** Every session in the view, routable or not, for /poolz and /v1/models. */
  all(): readonly ProviderSession[] {
    if (this.#dirty || this.#builtAt !== this.d.registry.version) this.#rebuild()
    return this.#list
  }

  liveSessions(): IterableIterator<ProviderSession> {
    return this.all()[Symbol.iterator]()
  }

  /** Sessions each live node lists, for /poolz's cluster section; null for a node whose snapshot has not arrived. */
  sessionsOf(nodeId: string, incarnation: string): number | null {
    if (nodeId === this.d.nodeId) return this.d.registry.size
    const r = this.#remote.get(nodeId)
    return r === undefined || r.incarnation !== incarnation ? null : r.sessions.length
  }

  recordOutcome(providerId: string, ok: boolean, now: number): void {
    this.d.registry.recordOutcome(providerId, ok, now)
    if (this.d.registry.get(providerId) !== undefined) return
    for (const s of this.all()) if (s.providerId === providerId) Object.assign(s, ok ? afterSuccess() : afterFailure(s, now))
  }

  markBusy(providerId: string, assignedId: string): void {
    this.d.registry.markBusy(providerId, assignedId)
    for (const s of this.all()) if (s.providerId === providerId && s.assignedId === assignedId && s.status === 'ready') s.status = 'busy'
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#stopWatch?.()
    // A clean leave: the others drop our rows at once instead of at the next poll of pc_nodes.
    await this.kv.delete(`p.${this.d.nodeId}`).catch(() => undefined)
  }

  #rebuild(): void {
    this.#dirty = false
    this.#builtAt = this.d.registry.version
    const list: ProviderSession[] = [...this.d.registry.sessionList()]
    // A fenced node knows nothing current about the others: it shows its own share (none, once
    // its sockets are closed) rather than snapshots it can no longer check.
    if (!this.d.isLive()) {
      this.#list = list
      return
    }
    const localIds = new Set(list.map((s) => s.providerId))
    const live = this.d.liveNodes().nodes
    for (const [nodeId, snap] of this.#remote) {
      const node = live.get(nodeId)
      if (nodeId === this.d.nodeId || node === undefined || node.incarnation !== snap.incarnation) continue
      for (const s of snap.sessions) {
        if (localIds.has(s.providerId)) continue
        const lease = this.d.leases.get(s.providerId)
        const named =
          lease !== undefined &&
          lease.state === 'active' &&
          lease.node_id === nodeId &&
          lease.incarnation === snap.incarnation &&
          lease.assigned_id === s.assignedId
        list.push({ ...s, leasePending: s.leasePending === true || !named, cordoned: s.cordoned || this.d.cordoned(s.providerId) })
      }
    }
    // Selection samples runs of the list (select-provider.ts): connection order, or node order,
    // must not decide who competes with whom.
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1))
      const t = list[i] as ProviderSession
      list[i] = list[j] as ProviderSession
      list[j] = t
    }
    this.#list = list
  }

  async #publish(): Promise<void> {
    if (this.#publishing || this.#stopped || !this.d.isLive()) return
    this.#publishing = true
    try {
      const text = encodeSnapshot(this.d.nodeId, this.d.incarnation(), this.d.registry.sessionList())
      if (text === this.#lastPublished) return
      await this.kv.put(`p.${this.d.nodeId}`, text)
      this.#lastPublished = text
    } catch (err) {
      this.#lastPublished = null
      this.d.log.debug({ event: 'cluster.pool_publish_failed', err }, 'could not publish this node’s pool snapshot')
    } finally {
      this.#publishing = false
    }
  }

  async #watch(generation: number): Promise<void> {
    const iter = await this.kv.watch({ key: 'p.>' })
    this.#stopWatch = () => iter.stop()
    this.#remote.clear()
    this.#dirty = true
    void (async () => {
      try {
        for await (const e of iter) {
          const nodeId = e.key.slice(2)
          if (nodeId === this.d.nodeId) continue
          const snap = e.operation === 'PUT' ? parseSnapshot(e.string()) : null
          if (snap === null || snap.nodeId !== nodeId) this.#remote.delete(nodeId)
          else this.#remote.set(nodeId, { incarnation: snap.incarnation, sessions: snap.sessions })
          this.#dirty = true
        }
      } catch (err) {
        this.d.log.debug({ event: 'cluster.pool_watch_failed', err }, 'the pool snapshot watch failed')
      }
      while (!this.#stopped && generation === this.#generation) {
        await delay(1000)
        try {
          if (!this.#stopped && generation === this.#generation) await this.#watch(generation)
          return
        } catch {
          // NATS still away: try again.
        }
      }
    })()
  }
}
