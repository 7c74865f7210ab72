import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node'
import { PROVIDER_ID_RE } from '@poolcoord/protocol'
import type { Logger } from '../logger.js'

/** What an operator action did to the session that held the id; null when no node held one. */
export interface SessionActionResult {
  provider_id: string
  assigned_id: string
  in_flight: number
}

export type SessionAction = 'drain' | 'kick'

export interface ClusterOpsDeps {
  nc: NatsConnection
  nodeId: string
  /** Runs the action on this node's own session for the id, if it holds one. */
  act(action: SessionAction, providerId: string): SessionActionResult | null
  /** Re-reads the cordons from the database and applies them to this node's sessions. */
  refreshCordons(): Promise<void>
  /** The node whose lease names the id, as the lease watch last saw it. */
  ownerOf(providerId: string): string | undefined
  log: Logger
}

const CORDONS_SUBJECT = 'pc.ops.cordons'
const adminSubject = (nodeId: string) => `pc.n.${nodeId}.admin`
const enc = new TextEncoder()
const dec = new TextDecoder()

/**
 * Operator actions in a cluster (specs/cluster.md §8): the admin API of any node acts on a
 * provider wherever its socket is.
 *
 * - Drain and kick go to the node whose lease names the provider, as a request; it acts on its
 *   own session and answers what it did.
 * - A cordon or uncordon is written to PostgreSQL by the node that took it, which then tells
 *   every node to read the set again. The broadcast is at-most-once, so every node also reads
 *   the set every `refreshMs`: a node that missed one is wrong for at most that long.
 */
export class ClusterOps {
  readonly #subs: Subscription[]
  readonly #timer: NodeJS.Timeout
  /** A read running, and whether another was asked for meanwhile: a burst of announcements costs two reads, not one each. */
  #refreshing: Promise<void> | null = null
  #again = false

  constructor(
    private readonly d: ClusterOpsDeps,
    refreshMs = 10_000,
  ) {
    this.#subs = [
      d.nc.subscribe(CORDONS_SUBJECT, { callback: (err) => (err === null ? this.#refresh() : undefined) }),
      d.nc.subscribe(adminSubject(d.nodeId), { callback: (err, msg) => (err === null ? this.#onAdmin(msg) : undefined) }),
    ]
    this.#timer = setInterval(() => this.#refresh(), refreshMs)
    this.#timer.unref()
  }

  /** After a cordon or uncordon committed here: every other node re-reads the set. */
  announceCordons(): void {
    try {
      this.d.nc.publish(CORDONS_SUBJECT, enc.encode('changed'))
    } catch (err) {
      this.d.log.warn(
        { event: 'cluster.cordon_broadcast_failed', err },
        'could not tell the other nodes of a cordon; they read it within their refresh interval',
      )
    }
  }

  /** Runs a drain or kick on the node that holds the provider. Null when no node holds it. */
  async remote(action: SessionAction, providerId: string): Promise<SessionActionResult | null> {
    const owner = this.d.ownerOf(providerId)
    if (owner === undefined || owner === this.d.nodeId) return null
    try {
      const reply = await this.d.nc.request(adminSubject(owner), enc.encode(JSON.stringify({ action, provider_id: providerId })), { timeout: 2_000 })
      return parseResult(reply.data)
    } catch (err) {
      this.d.log.warn({ event: 'cluster.remote_admin_failed', err, provider_id: providerId, owner }, 'the node holding the provider did not answer')
      return null
    }
  }

  close(): void {
    clearInterval(this.#timer)
    for (const s of this.#subs) s.unsubscribe()
  }

  #refresh(): void {
    if (this.#refreshing !== null) {
      this.#again = true
      return
    }
    this.#refreshing = (async () => {
      do {
        this.#again = false
        await this.d.refreshCordons().catch((err: unknown) => this.d.log.warn({ event: 'cluster.cordon_refresh_failed', err }, 'could not read the cordons'))
      } while (this.#again)
      this.#refreshing = null
    })()
  }

  #onAdmin(msg: Msg): void {
    let result: SessionActionResult | null = null
    try {
      const v: unknown = msg.data.length > 1024 ? null : JSON.parse(dec.decode(msg.data))
      const { action, provider_id } = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>
      if ((action === 'drain' || action === 'kick') && typeof provider_id === 'string' && PROVIDER_ID_RE.test(provider_id)) {
        result = this.d.act(action, provider_id)
      }
    } catch {
      result = null
    }
    try {
      msg.respond(enc.encode(JSON.stringify(result)))
    } catch (err) {
      this.d.log.debug({ err }, 'could not answer a remote admin action')
    }
  }
}

function parseResult(bytes: Uint8Array): SessionActionResult | null {
  const v: unknown = JSON.parse(dec.decode(bytes))
  if (typeof v !== 'object' || v === null) return null
  const r = v as Record<string, unknown>
  if (typeof r.provider_id !== 'string' || typeof r.assigned_id !== 'string' || typeof r.in_flight !== 'number') return null
  return { provider_id: r.provider_id, assigned_id: r.assigned_id, in_flight: r.in_flight }
}
