import { EventEmitter } from 'node:events'
import { JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { connect, RequestError, type NatsConnection } from '@nats-io/transport-node'
import { MAX_INFERENCE_REQUEST_BYTES } from '@poolcoord/protocol'
import { ConfigError, NatsUnavailableError } from '../errors.js'
import type { Logger } from '../logger.js'

/**
 * The smallest server `max_payload` cluster mode accepts. The largest node-to-node message is an
 * inference request relayed to the node that owns the provider: its body may be as large as the
 * frame a provider accepts (MAX_INFERENCE_REQUEST_BYTES, 4 MiB), and NATS counts headers (request
 * and provider ids, deadline, origin: well under 1 KiB) inside max_payload too; 64 KiB of room
 * keeps a later header from turning into a refused publish. The server default (1 MiB) is too
 * small, so a node refuses to start rather than fail on the first large request.
 */
export const MIN_NATS_MAX_PAYLOAD = MAX_INFERENCE_REQUEST_BYTES + 64 * 1024

export type NatsLinkStatus = 'connected' | 'disconnected' | 'closed'

export interface NatsLinkOptions {
  servers: string[]
  /** Shown by the server's monitoring: the node id. */
  name: string
  log: Logger
  /** Per attempt, for the first connection. */
  connectTimeoutMs?: number
  /** Default bound on each JetStream request (KV reads and writes take their own). */
  requestTimeoutMs?: number
}

/**
 * One NATS connection for the node, checked at start-up: a server that cannot carry our frames,
 * or has no JetStream, is a deployment error and the start is refused (ConfigError, exit 2). Once
 * up, the client reconnects forever, and `status` events report the link going down and up:
 * nothing in the node waits on them for safety (the fence clock does not need NATS to fence).
 */
export class NatsLink extends EventEmitter<{ status: [NatsLinkStatus] }> {
  #status: NatsLinkStatus = 'connected'

  private constructor(
    /** As configured (COORD_NATS_URL): for messages. */
    readonly servers: readonly string[],
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    private readonly log: Logger,
  ) {
    super()
  }

  static async connect(opts: NatsLinkOptions): Promise<NatsLink> {
    let nc: NatsConnection
    try {
      nc = await connect({
        servers: opts.servers,
        name: opts.name,
        timeout: opts.connectTimeoutMs ?? 5_000,
        // The client would otherwise build two Error objects per request just for their stack
        // traces: measured at 8.5 % of a relaying node's busy time (bench/, cluster section).
        noAsyncTraces: true,
        // Never give up: a node outlives a NATS outage and recovers by itself when it returns.
        // Each server is retried every 1-2 s; a dial is cheap, and the node stays fenced until then.
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1_000,
        reconnectJitter: 1_000,
        // A hung server (no pongs) is left for another within about 15 s; fencing never waits for this.
        pingInterval: 5_000,
        maxPingOut: 2,
      })
    } catch (err) {
      throw new NatsUnavailableError(opts.servers, err)
    }
    try {
      const timeout = opts.requestTimeoutMs ?? 5_000
      checkMaxPayload(nc.info?.max_payload ?? 0, nc.getServer())
      const jsm = await openJetStream(nc, timeout, opts.servers)
      const link = new NatsLink(opts.servers, nc, jetstream(nc, { timeout }), jsm, opts.log)
      link.#watch()
      return link
    } catch (err) {
      await nc.close().catch(() => undefined)
      throw err
    }
  }

  get status(): NatsLinkStatus {
    return this.#status
  }

  /** Closes the connection; never throws. */
  async close(): Promise<void> {
    if (this.nc.isClosed()) return
    await this.nc.close().catch((err: unknown) => this.log.warn({ event: 'nats.close_failed', err }, 'closing the NATS connection failed'))
  }

  #set(status: NatsLinkStatus): void {
    if (status === this.#status) return
    this.#status = status
    this.emit('status', status)
  }

  #watch(): void {
    void (async () => {
      for await (const s of this.nc.status()) {
        switch (s.type) {
          case 'disconnect':
            this.log.warn({ event: 'nats.disconnected', server: s.server }, 'lost the NATS server; reconnecting')
            this.#set('disconnected')
            break
          case 'reconnect':
            this.log.info({ event: 'nats.reconnected', server: s.server }, 'NATS connection is back')
            this.#recheckMaxPayload()
            this.#set('connected')
            break
          case 'staleConnection':
            this.log.warn({ event: 'nats.stale' }, 'the NATS server stopped answering pings; reconnecting')
            break
        }
      }
    })()
    void this.nc.closed().then(() => this.#set('closed'))
  }

  /** Another server of a NATS cluster may be configured differently from the one checked at start. */
  #recheckMaxPayload(): void {
    try {
      checkMaxPayload(this.nc.info?.max_payload ?? 0, this.nc.getServer())
    } catch (err) {
      this.log.error({ event: 'nats.max_payload_too_small', err }, 'the NATS server reached after a reconnect cannot carry our largest messages')
    }
  }
}

export function checkMaxPayload(maxPayload: number, server: string): void {
  if (maxPayload < MIN_NATS_MAX_PAYLOAD) {
    throw new ConfigError(
      `the NATS server at ${server} accepts messages of at most ${maxPayload} bytes (max_payload); cluster mode relays inference requests of up to 4 MiB between nodes and needs at least ${MIN_NATS_MAX_PAYLOAD}: set max_payload: 8MB in the nats-server configuration`,
    )
  }
}

async function openJetStream(nc: NatsConnection, timeout: number, servers: string[]): Promise<JetStreamManager> {
  try {
    // jetstreamManager asks for the account's JetStream info, which fails when JetStream is off.
    return await jetstreamManager(nc, { timeout })
  } catch (err) {
    if (isJetStreamDisabled(err)) {
      throw new ConfigError(
        `JetStream is not enabled on the NATS server at ${nc.getServer()}: start nats-server with -js (or a jetstream {} block in its configuration); cluster mode keeps node liveness in JetStream KV`,
      )
    }
    throw new NatsUnavailableError(servers, err)
  }
}

/**
 * By code, never by message text: the API answers 10039 when JetStream is off for the account,
 * and a server without JetStream has no responder for the API subject at all (503).
 */
export function isJetStreamDisabled(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 3; e = e.cause, depth++) {
    if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.JetStreamNotEnabledForAccount) return true
    if (e instanceof RequestError && e.isNoResponders()) return true
  }
  return false
}
