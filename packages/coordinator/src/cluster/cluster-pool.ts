import { setTimeout as delay } from 'node:timers/promises'
import type { KV } from '@nats-io/kv'
import type { FailureReason } from '@poolcoord/protocol'
import { Kvm } from '@nats-io/kv'
import type { Logger } from '../logger.js'
import { afterFailure, afterSuccess, type Health } from '../pool/provider-health.js'
import type { ProviderLink } from '../pool/provider-link.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { Registry } from '../pool/registry.js'
import type { SessionLease } from './lease-value.js'
import type { NatsLink } from './nats-link.js'
import type { NodesView } from './nodes-poller.js'
import { encodeSnapshot, parseChunk, parseManifest } from './pool-snapshot.js'

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
/** How stale another node's view of this node's heartbeat times may get. */
const VOLATILE_EVERY_MS = 5_000

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
  /**
   * What this node learnt of other nodes' providers from its own attempts: their failure
   * cooldowns, and "queue full" until the provider's next heartbeat. Kept here, keyed by
   * provider_id and by session, and applied at every rebuild: the owner's next snapshot would
   * otherwise wipe them within a quarter second, and a provider that fails every request at once
   * would win every selection on every other node.
   */
  readonly #health = new Map<string, Health>()
  readonly #busy = new Map<string, number | null>()
  /** Moves when #health changes a remote copy: the ejection cap's signal for what the Registry never sees. */
  #healthVersion = 0
  #list: ProviderSession[] = []
  #dirty = true
  #builtAt = -1
  /** The last published snapshot without its volatile times, and when it was published. */
  #lastPublished: string | null = null
  #lastPublishedAt = -Infinity
  /** Chunks this node wrote last time: keys past the new count are deleted. */
  #publishedChunks = 0
  #seq = 0
  #publishFailing = false
  #publishing = false
  /** Chunks received per node, assembled into `#remote` when their manifest arrives. */
  readonly #chunks = new Map<string, Map<number, { seq: number; incarnation: string; sessions: ProviderSession[] }>>()
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

  /**
   * The ejection cap's change signal: the Registry's, for this node's own sessions, plus this
   * node's outcomes on other nodes' providers. A new snapshot from another node replaces the
   * list, which the cap notices by identity.
   */
  get routingVersion(): number {
    return this.d.registry.routingVersion + this.#healthVersion
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

  recordOutcome(providerId: string, failure: FailureReason | null, now: number): void {
    this.d.registry.recordOutcome(providerId, failure, now)
    if (this.d.registry.get(providerId) !== undefined) return
    const remote = this.all().find((s) => s.providerId === providerId)
    // A success may clear a cooldown that came with the owner's snapshot, which the Registry never saw: the cap must hear of it.
    if (remote !== undefined && (failure !== null || remote.consecutiveFailures !== 0 || remote.cooldownUntil !== 0)) this.#healthVersion++
    if (failure === null) this.#health.delete(providerId)
    else {
      this.#health.set(providerId, afterFailure(this.#health.get(providerId) ?? remote ?? afterSuccess(), now, failure))
      if (this.#health.size > 10_000) for (const [id, h] of this.#health) if (h.cooldownUntil <= now) this.#health.delete(id)
    }
    if (remote !== undefined) Object.assign(remote, this.#health.get(providerId) ?? afterSuccess())
  }

  markBusy(providerId: string, assignedId: string): void {
    this.d.registry.markBusy(providerId, assignedId)
    for (const s of this.all()) {
      if (s.nodeId === this.d.nodeId || s.providerId !== providerId || s.assignedId !== assignedId) continue
      if (s.status === 'ready') s.status = 'busy'
      this.#busy.set(`${s.nodeId}/${assignedId}`, s.lastHeartbeatAt)
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#stopWatch?.()
    // A clean leave: the others drop our rows at once instead of at the next poll of pc_nodes.
    await this.kv.delete(`p.${this.d.nodeId}`).catch(() => undefined)
    for (let i = 0; i < this.#publishedChunks; i++) await this.kv.delete(`p.${this.d.nodeId}.${i}`).catch(() => undefined)
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
    const busySeen = new Set<string>()
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
        const copy = { ...s, leasePending: s.leasePending === true || !named, cordoned: s.cordoned || this.d.cordoned(s.providerId) }
        const health = this.#health.get(s.providerId)
        if (health !== undefined) Object.assign(copy, health)
        const busyKey = `${nodeId}/${s.assignedId}`
        if (this.#busy.has(busyKey)) {
          busySeen.add(busyKey)
          // Busy until a heartbeat newer than the one we marked it at says otherwise.
          if (this.#busy.get(busyKey) === s.lastHeartbeatAt) copy.status = copy.status === 'ready' ? 'busy' : copy.status
          else this.#busy.delete(busyKey)
        }
        list.push(copy)
      }
    }
    for (const key of this.#busy.keys()) if (!busySeen.has(key)) this.#busy.delete(key)
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
      // What selection reads is compared without the times every frame moves (last heartbeat, last
      // inbound): with thousands of providers heartbeating, something always moved, and each
      // republish costs every other node a parse and a rebuild. Those times alone go out every
      // VOLATILE_EVERY_MS, for /poolz. Sequence number 0 here; the real one goes in below, as the
      // first "seq" of each text (the header comes before the rows, which hold no bare quote).
      const sessions = this.d.registry.sessionList()
      const stable = encodeSnapshot(this.d.nodeId, this.d.incarnation(), 0, sessions, false)
      const key = stable.manifest + stable.chunks.join('\n')
      const now = performance.now()
      if (key === this.#lastPublished && now - this.#lastPublishedAt < VOLATILE_EVERY_MS) return
      const probe = encodeSnapshot(this.d.nodeId, this.d.incarnation(), 0, sessions)
      const seq = ++this.#seq
      const withSeq = (text: string): string => text.replace('"seq":0,', `"seq":${seq},`)
      const snap = { manifest: withSeq(probe.manifest), chunks: probe.chunks.map(withSeq) }
      const base = `p.${this.d.nodeId}`
      // Chunks first, the manifest last: a reader assembles a snapshot only once it has every chunk the manifest names.
      for (const [i, chunk] of snap.chunks.entries()) await this.kv.put(`${base}.${i}`, chunk)
      await this.kv.put(base, snap.manifest)
      for (let i = snap.chunks.length; i < this.#publishedChunks; i++) await this.kv.delete(`${base}.${i}`).catch(() => undefined)
      this.#publishedChunks = snap.chunks.length
      this.#lastPublished = key
      this.#lastPublishedAt = now
      if (this.#publishFailing) this.d.log.info({ event: 'cluster.pool_publish_recovered' }, 'publishing this node’s pool snapshot again')
      this.#publishFailing = false
    } catch (err) {
      this.#lastPublished = null
      // While NATS is away every node is fenced anyway; a failure on a live link means the others do not see this node's providers.
      if (!this.#publishFailing && this.d.link.status === 'connected') {
        this.d.log.warn(
          { event: 'cluster.pool_publish_failed', err },
          'could not publish this node’s pool snapshot: the other nodes do not see its latest sessions',
        )
      }
      this.#publishFailing = true
    } finally {
      this.#publishing = false
    }
  }

  /** One pool key changed: a chunk is kept until its manifest arrives; a manifest assembles the node's snapshot. */
  #onEntry(key: string, text: string | null): void {
    const [, nodeId, index, extra] = key.split('.')
    if (nodeId === undefined || nodeId === this.d.nodeId || extra !== undefined) return
    let chunks = this.#chunks.get(nodeId)
    if (index !== undefined) {
      const c = text === null ? null : parseChunk(text)
      if (c === null || c.nodeId !== nodeId || String(c.i) !== index) return void chunks?.delete(Number(index))
      if (chunks === undefined) this.#chunks.set(nodeId, (chunks = new Map()))
      chunks.set(c.i, { seq: c.seq, incarnation: c.incarnation, sessions: c.sessions })
      return
    }
    const m = text === null ? null : parseManifest(text)
    if (m === null || m.node_id !== nodeId) {
      // Deleted (a clean leave) or unreadable: the node's rows go.
      this.#remote.delete(nodeId)
      this.#chunks.delete(nodeId)
      this.#dirty = true
      return
    }
    const sessions: ProviderSession[] = []
    for (let i = 0; i < m.chunks; i++) {
      const c = chunks?.get(i)
      // Not every chunk of this publish is here yet (a watch that started mid-publish): keep the last whole snapshot.
      if (c === undefined || c.seq !== m.seq || c.incarnation !== m.incarnation) return
      for (const s of c.sessions) sessions.push(s)
    }
    if (chunks !== undefined) for (const i of chunks.keys()) if (i >= m.chunks) chunks.delete(i)
    this.#remote.set(nodeId, { incarnation: m.incarnation, sessions })
    this.#dirty = true
  }

  async #watch(generation: number): Promise<void> {
    const iter = await this.kv.watch({ key: 'p.>' })
    this.#stopWatch = () => iter.stop()
    this.#remote.clear()
    this.#chunks.clear()
    this.#dirty = true
    void (async () => {
      try {
        for await (const e of iter) this.#onEntry(e.key, e.operation === 'PUT' ? e.string() : null)
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
