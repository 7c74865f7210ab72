import { Close, type CloseSpec } from '@poolcoord/protocol'
import type { ClusterConfig } from '../config.js'
import { ProviderLock } from '../db/provider-lock.js'
import type { Logger } from '../logger.js'
import type { ProviderLink } from '../pool/provider-link.js'
import type { ProviderSession } from '../pool/provider-session.js'
import type { Registry } from '../pool/registry.js'
import type { AttemptTarget } from '../routing/attempt.js'
import { ClusterPool } from './cluster-pool.js'
import { LeaseKeeper, type ClaimOutcome } from './lease-keeper.js'
import type { ClusterHealth } from './liveness-events.js'
import { NatsLink } from './nats-link.js'
import { resolveNodeId } from './node-id.js'
import { NodeLiveness, type NodesView } from './node-liveness.js'
import { RemoteAttempts, defaultRemoteTiming, type RemoteOutcome } from './remote-attempts.js'
import { RemoteServer, type ServedOutcome } from './remote-server.js'
import { SessionLeases } from './session-leases.js'
import { openNodesBucket } from './nodes-bucket.js'
import { openSessionsBucket } from './sessions-bucket.js'
import { ClusterOps, type SessionAction, type SessionActionResult } from './cluster-ops.js'

/** What the cluster reports to the node's metrics (metrics.ts). */
export interface ClusterMetrics {
  leaseClaim(outcome: ClaimOutcome): void
  remote(role: 'origin' | 'owner', outcome: RemoteOutcome | ServedOutcome): void
  fenced(): void
}

export interface ClusterNodeDeps {
  config: ClusterConfig
  databaseUrl: string
  dataDir: string
  log: Logger
  registry: Registry<ProviderLink>
  /** This node's own sockets: the Dispatcher. */
  local: AttemptTarget
  maxFrameBytes: number
  storeTimeoutMs: number
  metrics: ClusterMetrics
  /** How often this node republishes its pool snapshot when it changed. */
  poolPublishMs?: number
  /** An operator's drain or kick on this node's own session for the id (pool/pool-control.ts). */
  act(action: SessionAction, providerId: string): SessionActionResult | null
  /** Re-reads the cordons and applies them to this node's sessions. */
  refreshCordons(): Promise<void>
  /** This node's copy of the cordon set: applied to other nodes' rows at once, before their owners republish. */
  isCordoned(providerId: string): boolean
}

/**
 * One coordinator as a member of a cluster (specs/cluster.md): its NATS link, its liveness key
 * and self-fence, the session leases it holds, the cluster-wide pool view, and both halves of
 * remote attempts. Built at start-up, before the listener serves anything; the rest of the
 * coordinator sees `isLive`, the lease operations of admission, `target` and `pool`.
 *
 * On a fence this node stops routing at once (isLive reads the clock) and closes every provider
 * socket with 4011 node_fenced; the providers reconnect, through the load balancer, to a live
 * node. It unfences by itself, under a new incarnation, when NATS is back.
 */
export class ClusterNode {
  /** Sessions waiting for a handover read the lease on every change that concerns them, and at least this often. */
  readonly handoverPollMs = 1000

  private constructor(
    readonly nodeId: string,
    readonly link: NatsLink,
    readonly liveness: NodeLiveness,
    readonly keeper: LeaseKeeper,
    readonly pool: ClusterPool,
    readonly remote: RemoteAttempts,
    private readonly server: RemoteServer,
    readonly admissionLock: ProviderLock,
    readonly target: AttemptTarget,
    readonly ops: ClusterOps,
  ) {}

  static async start(d: ClusterNodeDeps): Promise<ClusterNode> {
    const nodeId = resolveNodeId(d.config.nodeId, d.dataDir, d.log)
    const link = await NatsLink.connect({ servers: d.config.natsServers, name: nodeId, log: d.log })
    const cleanup: Array<() => unknown> = [() => link.close()]
    try {
      const liveness = await NodeLiveness.start({ link, nodeId, log: d.log, timing: d.config.timing })
      cleanup.unshift(() => liveness.stop())
      const leases = await SessionLeases.open({ link, log: d.log })
      let pool: ClusterPool | null = null
      const closeLocal = (providerId: string, assignedId: string, spec: CloseSpec): void => {
        const handle = d.registry.handle(providerId, assignedId)
        if (handle === undefined) return
        d.registry.remove(providerId, assignedId)
        handle.close(spec)
      }
      const keeper = new LeaseKeeper(
        leases,
        liveness,
        { get: (id) => d.registry.get(id), close: closeLocal },
        { changed: () => pool?.invalidate(), claimed: (o) => d.metrics.leaseClaim(o) },
        d.log,
      )
      pool = await ClusterPool.open({
        link,
        nodeId,
        incarnation: () => liveness.incarnation,
        isLive: () => liveness.isLive(),
        registry: d.registry,
        leases: keeper.current,
        liveNodes: () => liveness.liveNodes(),
        cordoned: d.isCordoned,
        publishMs: d.poolPublishMs ?? 250,
        log: d.log,
      })
      const clusterPool = pool
      cleanup.unshift(() => clusterPool.stop())
      await keeper.start()
      cleanup.unshift(() => keeper.stop())
      const remote = new RemoteAttempts(
        link.nc,
        { nodeId, incarnation: () => liveness.incarnation, connected: () => link.status === 'connected' },
        (o) => d.metrics.remote('origin', o),
        d.log,
      )
      cleanup.unshift(() => remote.close())
      const server = new RemoteServer({
        nc: link.nc,
        nodeId,
        isLive: () => liveness.isLive(),
        originDead: (id, inc, since) => originDead(liveness.liveNodes(), id, inc, since),
        registry: d.registry,
        local: d.local,
        maxFrameBytes: d.maxFrameBytes,
        keepaliveMs: defaultRemoteTiming.keepaliveMs,
        served: (o) => d.metrics.remote('owner', o),
        log: d.log,
      })
      cleanup.unshift(() => server.close())
      const admissionLock = new ProviderLock(d.databaseUrl, { log: d.log, waitTimeoutMs: d.storeTimeoutMs })
      const target: AttemptTarget = {
        // Every dispatch, local or remote, first asks the fence clock: a paused or cut-off node
        // routes nothing past its deadline, whatever its timers have not yet noticed.
        dispatch: (s, req, onEvent) => {
          if (!liveness.isLive()) return null
          return s.nodeId === undefined || s.nodeId === nodeId ? d.local.dispatch(s, req, onEvent) : remote.dispatch(s, req, onEvent)
        },
      }
      const ops = new ClusterOps({
        nc: link.nc,
        nodeId,
        act: d.act,
        refreshCordons: async () => {
          await d.refreshCordons()
          clusterPool.invalidate()
        },
        ownerOf: (id) => keeper.current.get(id)?.node_id,
        log: d.log,
      })
      cleanup.unshift(() => ops.close())
      const node = new ClusterNode(nodeId, link, liveness, keeper, clusterPool, remote, server, admissionLock, target, ops)
      liveness.on('fenced', (e) => {
        d.metrics.fenced()
        d.log.error({ event: 'cluster.fenced', reason: e.reason, sessions: d.registry.size }, 'this node is fenced: closing every provider socket with 4011')
        keeper.fenced()
        remote.abortAll()
        for (const s of d.registry.sessions()) closeLocal(s.providerId, s.assignedId, Close.nodeFenced)
        clusterPool.invalidate()
      })
      liveness.on('unfenced', (e) => {
        d.log.info({ event: 'cluster.unfenced', incarnation: e.incarnation, fenced_for_ms: Math.round(e.fencedForMs) }, 'this node is live again')
        clusterPool.invalidate()
      })
      liveness.on('nodes', () => clusterPool.invalidate())
      // NATS came back: it may be a server that lost its JetStream store (replaced, or its volume
      // lost). The buckets are created again if missing (their handles work on a new stream of the
      // same name), then the watches start afresh. A fenced node on a live link also checks every
      // few seconds: a bucket deleted by hand fails every renewal until it exists again.
      let restoring: Promise<void> | null = null
      const restore = (): Promise<void> => (restoring ??= restoreOnce().finally(() => (restoring = null)))
      const restoreOnce = async (): Promise<void> => {
        try {
          await openNodesBucket(link, d.config.timing, d.log)
          await openSessionsBucket(link, d.log)
        } catch (err) {
          d.log.warn({ event: 'cluster.buckets_unavailable', err }, 'could not open the cluster buckets; retrying')
          return
        }
        await clusterPool.resync()
        await keeper.resync()
      }
      link.on('status', (status) => {
        if (status === 'connected') void restore()
        // Messages in flight are lost across a reconnect: attempts both ways end now, so that
        // buyers fail over (before their first byte) or get their SSE error, instead of waiting
        // out the silence.
        if (status === 'disconnected') {
          remote.abortAll()
          server.cancelAll()
        }
      })
      const watchdog = setInterval(() => {
        if (link.status === 'connected' && !liveness.isLive()) void restore()
      }, 5_000)
      watchdog.unref()
      cleanup.unshift(() => clearInterval(watchdog))
      return node
    } catch (err) {
      for (const f of cleanup) await Promise.resolve(f()).catch(() => undefined)
      throw err
    }
  }

  get incarnation(): string {
    return this.liveness.incarnation
  }

  isLive(): boolean {
    return this.liveness.isLive()
  }

  health(): ClusterHealth {
    return this.liveness.health()
  }

  nodes(): NodesView {
    return this.liveness.liveNodes()
  }

  /** A cordon or uncordon committed through this node: this node's view and every other node follow. */
  cordonsChanged(): void {
    this.pool.invalidate()
    this.ops.announceCordons()
  }

  /** This node's session as the leases name it. */
  ref(s: Pick<ProviderSession, 'assignedId'>, incarnation = this.incarnation) {
    return { node_id: this.nodeId, incarnation, assigned_id: s.assignedId }
  }

  /** Leaves the cluster: stops serving other nodes, deletes this node's snapshot and key, closes the link. Never throws. */
  async stop(): Promise<void> {
    // First, and synchronously: isLive() turns false, so nothing is routed from here on, not
    // even the failovers of the attempts cut below.
    const leaving = this.liveness.stop()
    this.ops.close()
    this.server.close()
    this.remote.close()
    this.keeper.stop()
    await leaving
    await this.pool.stop()
    await this.admissionLock.close().catch(() => undefined)
    await this.link.close()
  }
}

/**
 * Dead only on positive evidence: a poll of pc_nodes that began after the attempt started and
 * did not find the origin's incarnation. The origin was live when it dispatched, so its key was
 * there before that poll began; if the poll missed it, the key is gone. A node that just joined or
 * unfenced and is not yet in an older view is not dead.
 */
function originDead(view: NodesView, nodeId: string, incarnation: string, since: number): boolean {
  if (view.askedAt === null || view.askedAt <= since) return false
  return view.nodes.get(nodeId)?.incarnation !== incarnation
}
