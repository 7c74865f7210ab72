import type { AuthState, ProviderStatus } from '@poolcoord/protocol'
import type { Test } from 'tap'
import { handoverDuty, sessionVerdict, type Claimant } from '../../src/cluster/lease-decision.js'
import type { IncarnationRef, SessionRef } from '../../src/cluster/lease-value.js'
import { SessionLeases, type LeaseWatch } from '../../src/cluster/session-leases.js'
import { startNode, type TestNode } from './cluster-node.js'
import type { NatsServer } from './nats-server.js'

/** A node for lease tests: a live pc_nodes key (real incarnation, renewed) and its own SessionLeases, on its own NATS connection. */
export interface LeaseNode extends TestNode {
  leases: SessionLeases
  me(): IncarnationRef
  session(assignedId: string): SessionRef
  claimant(assignedId: string, auth: AuthState, status?: ProviderStatus): Claimant
}

export async function startLeaseNode(t: Test, nats: NatsServer, nodeId: string): Promise<LeaseNode> {
  const n = await startNode(t, nats, nodeId)
  const leases = await SessionLeases.open({ link: n.link, log: n.logs.logger })
  const me = (): IncarnationRef => ({ node_id: nodeId, incarnation: n.node.incarnation })
  const session = (assigned_id: string): SessionRef => ({ ...me(), assigned_id })
  return { ...n, leases, me, session, claimant: (a, auth_state, status = 'ready') => ({ ...session(a), auth_state, status }) }
}

/** One socket in the model: its lease decides whether it is routable. */
export interface ModelSession {
  providerId: string
  node: string
  assignedId: string
  routable: boolean
  /** 4006 once displaced, 4005 when its claim was refused; null while open. */
  closedWith: number | null
}

/**
 * What the wiring will do on each node, in miniature: the sessions held locally (claims in flight
 * included), a lease watch that closes a displaced or handed-over session (4006) before it
 * confirms, and a claim that routes at once on `active` or after awaitRoutable on `handover`.
 * `onRoutable` runs at the instant a session turns routable, so a test checks the invariant there.
 */
export class ModelNode {
  readonly sessions = new Set<ModelSession>()
  readonly errors: unknown[] = []
  #watch: LeaseWatch | null = null

  constructor(
    readonly n: LeaseNode,
    private readonly onRoutable: (s: ModelSession) => void = () => undefined,
  ) {}

  async start(t: Test): Promise<void> {
    this.#watch = await this.n.leases.watch(({ providerId, entry }) => {
      const lease = entry.kind === 'lease' ? entry.lease : null
      const me = this.n.me()
      for (const s of [...this.sessions].filter((s) => s.providerId === providerId)) {
        if (handoverDuty(lease, me, s.assignedId)?.close === s.assignedId || this.#displaced(lease, s)) this.#close(s, 4006)
      }
      // Only after the close: confirming is what lets the newcomer route.
      if (handoverDuty(lease, me, undefined) !== null) this.n.leases.confirmHandover(providerId, me).catch((err: unknown) => this.errors.push(err))
    })
    t.teardown(() => this.#watch?.stop())
  }

  /** A routable session whose lease names someone else. One still claiming is judged by its own claim. */
  #displaced(lease: Parameters<typeof sessionVerdict>[0], s: ModelSession): boolean {
    return s.routable && sessionVerdict(lease, this.n.session(s.assignedId), false) === 'displaced'
  }

  #close(s: ModelSession, code: number): void {
    s.routable = false
    s.closedWith = code
    this.sessions.delete(s)
  }

  /** A provider connects here: claim, then route now (active) or after the handover. Resolves once it is routable or gone. */
  async connect(providerId: string, assignedId: string, auth: AuthState): Promise<{ session: ModelSession; outcome: string }> {
    const s: ModelSession = { providerId, node: this.n.node.nodeId, assignedId, routable: false, closedWith: null }
    this.sessions.add(s)
    const result = await this.n.leases.claim(providerId, this.n.claimant(assignedId, auth))
    if (!result.ok) {
      this.#close(s, 4005)
      return { session: s, outcome: `refused:${result.reason}` }
    }
    if (result.lease.state === 'handover') {
      const r = await this.n.leases.awaitRoutable(providerId, this.n.session(assignedId), { pollMs: 50 })
      if (!r.routable) {
        this.#close(s, 4006)
        return { session: s, outcome: 'displaced_while_waiting' }
      }
    }
    if (!this.sessions.has(s)) return { session: s, outcome: 'displaced' }
    s.routable = true
    this.onRoutable(s)
    return { session: s, outcome: result.action }
  }
}
