import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import type { Config } from './config.js'
import { createContext, type AppContext, type ContextOverrides } from './context.js'
import { createHttpHandler } from './http/http-handler.js'
import { isIdle } from './pool/eviction.js'
import { Close } from '@poolcoord/protocol'
import { PendingLimiter } from './ws/pending-limiter.js'
import { drainSession } from './pool/pool-control.js'
import { closeSocket } from './ws/socket-link.js'
import { createUpgradeHandler, selectSubprotocol } from './ws/upgrade.js'

function newHttpServer(): http.Server {
  // Node enforces requestTimeout and headersTimeout only when it checks its connections, every
  // connectionsCheckingInterval (30 s by default): a body dribbled at a byte a second would then
  // live up to twice its limit. Checking every second keeps each limit within a second of itself.
  const server = http.createServer({
    maxHeaderSize: 16 * 1024,
    headersTimeout: 10_000,
    requestTimeout: 30_000,
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: 1_000,
  })
  server.on('clientError', (_err, socket) => socket.destroy())
  return server
}

/**
 * Binds the listening port before anything slow happens, so that a busy port or a wrong
 * COORD_HOST is found in milliseconds. Until a Service takes the listener over, every request
 * and upgrade gets 503 `starting`.
 */
export async function bindListener(config: Pick<Config, 'host' | 'port'>): Promise<http.Server> {
  const server = newHttpServer()
  server.on('request', (_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', connection: 'close' })
    res.end('{"status":"starting"}')
  })
  server.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}

/** The coordinator process: HTTP routes, the provider WebSocket endpoint and the idle sweep. */
export class Service {
  private state: 'created' | 'started' | 'draining' | 'destroyed' = 'created'
  private sweepTimer: NodeJS.Timeout | undefined
  private destroying: Promise<void> | undefined
  /** What identity-v2 proofs sign: COORD_PUBLIC_ORIGIN, or ws://<host>:<bound port> once listening. */
  origin: string

  private constructor(
    readonly ctx: AppContext,
    private readonly server: http.Server,
    private readonly wss: WebSocketServer,
  ) {
    this.origin = ctx.config.identity.publicOrigin ?? ''
  }

  /**
   * `server`: a listener already bound by bindListener(), as the process entry does so that a
   * busy port is found before the database is opened; tests let create() make its own.
   */
  static async create(config: Config, overrides: ContextOverrides = {}, server: http.Server = newHttpServer()): Promise<Service> {
    const ctx = await createContext(config, overrides)
    const { limits } = config
    const wss = new WebSocketServer({ noServer: true, maxPayload: limits.maxFrameBytes, perMessageDeflate: false, handleProtocols: selectSubprotocol })
    const svc = new Service(ctx, server, wss)
    server.requestTimeout = limits.requestReadTimeoutMs
    server.headersTimeout = Math.min(10_000, limits.requestReadTimeoutMs)
    const handler = createHttpHandler(ctx, { draining: () => svc.state === 'draining' })
    const pending = new PendingLimiter(limits.maxPendingConnections, limits.maxPendingPerIp)
    server.removeAllListeners('request')
    server.removeAllListeners('upgrade')
    server.on('request', (req, res) => void handler(req, res))
    server.on(
      'upgrade',
      // A fenced node takes no provider connections: the 503 sends the provider (through the load
      // balancer, which sees /healthz fail too) to a live node, with its ordinary backoff.
      createUpgradeHandler(
        ctx,
        wss,
        pending,
        () => svc.state === 'started' && (ctx.cluster === null || ctx.cluster.isLive()),
        () => svc.origin,
      ),
    )
    return svc
  }

  async start(): Promise<AddressInfo> {
    if (this.state !== 'created') throw new Error(`cannot start a ${this.state} service`)
    if (!this.server.listening) {
      this.server.listen(this.ctx.config.port, this.ctx.config.host)
      await once(this.server, 'listening')
    }
    this.state = 'started'
    this.sweepTimer = setInterval(() => this.sweepIdle(), this.ctx.config.limits.sweepIntervalMs)
    this.sweepTimer.unref()
    const addr = this.server.address() as AddressInfo
    if (this.ctx.config.identity.publicOrigin === null) {
      const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address
      this.origin = `ws://${host}:${addr.port}`
      if (addr.address === '0.0.0.0' || addr.address === '::') {
        this.ctx.log.warn(
          { event: 'coordinator.origin_unset', origin: this.origin },
          'COORD_PUBLIC_ORIGIN is not set and the coordinator listens on all addresses: identity-v2 agents sign the origin they dial, so set COORD_PUBLIC_ORIGIN to it (e.g. wss://pool.example.com)',
        )
      }
    }
    this.ctx.log.info(
      { event: 'coordinator.started', host: addr.address, port: addr.port, db: this.ctx.db.kind, node_id: this.ctx.cluster?.nodeId },
      'coordinator listening',
    )
    return addr
  }

  /** Closes sessions that have sent nothing for the idle timeout. Exposed for tests. */
  sweepIdle(): number {
    const now = this.ctx.clock.now()
    let closed = 0
    for (const { session, handle } of [...this.ctx.registry.entries()]) {
      if (!isIdle(session, now, this.ctx.config.limits.idleTimeoutMs)) continue
      this.ctx.registry.remove(session.providerId, session.assignedId)
      this.ctx.log.warn({ event: 'provider.idle_timeout', provider_id: session.providerId, assigned_id: session.assignedId }, 'closing idle provider session')
      handle.close(Close.idleTimeout)
      closed++
    }
    return closed
  }

  /**
   * SIGTERM: stop taking work (upgrades and buyer requests get 503), send `drain` to every
   * provider, let the requests in flight finish for up to `drainMs`, then destroy. Requests still
   * running at the deadline are cut. A second signal can call destroy() to cut it short.
   */
  async drainAndStop(drainMs: number): Promise<void> {
    if (this.state !== 'started') return this.destroy()
    this.state = 'draining'
    const inFlight = this.ctx.dispatcher.inFlight + (this.ctx.cluster?.remote.inFlight ?? 0)
    this.ctx.log.info({ event: 'coordinator.draining', in_flight: inFlight, deadline_ms: drainMs }, 'draining: no new work')
    for (const session of this.ctx.registry.sessions()) drainSession(this.ctx, session, { close: false })
    // Idle keep-alive buyer connections would only bring new requests: close them now.
    this.server.closeIdleConnections()
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), drainMs)))
    // In cluster mode this node's buyers may be streaming from providers on other nodes, and other
    // nodes' buyers from this node's providers (those are on the Dispatcher too): wait for both.
    // Idle means both at the same moment: a local attempt that fails over to another node's
    // provider moves the work from one count to the other.
    const remote = this.ctx.cluster?.remote
    const idle = (async () => {
      while (this.ctx.dispatcher.inFlight > 0 || (remote?.inFlight ?? 0) > 0) {
        await (this.ctx.dispatcher.inFlight > 0 ? this.ctx.dispatcher.whenIdle(null) : remote?.whenIdle())
      }
    })()
    const outcome = await Promise.race([idle.then(() => 'idle' as const), deadline])
    clearTimeout(timer)
    this.ctx.log.info(
      { event: 'coordinator.drained', outcome, cut: this.ctx.dispatcher.inFlight + (remote?.inFlight ?? 0) },
      outcome === 'idle' ? 'drained' : 'drain deadline passed; cutting what is left',
    )
    await this.destroy()
  }

  /** Idempotent: stop accepting, close provider sockets with 1001, stop HTTP, close the database. */
  destroy(): Promise<void> {
    this.destroying ??= this.shutdown()
    return this.destroying
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }

  private async shutdown(): Promise<void> {
    const wasStarted = this.state === 'started' || this.state === 'draining'
    this.state = 'destroyed'
    clearInterval(this.sweepTimer)
    try {
      for (const ws of this.wss.clients) closeSocket(ws, Close.shuttingDown)
      if (wasStarted || this.server.listening) {
        const closed = once(this.server, 'close')
        this.server.close()
        this.server.closeAllConnections()
        for (const ws of this.wss.clients) ws.terminate()
        await closed
      }
    } finally {
      await this.ctx.cluster?.stop()
      await this.ctx.db.close()
      this.ctx.log.info({ event: 'coordinator.stopped' }, 'coordinator stopped')
    }
  }
}
