import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'
import type { Duplex } from 'node:stream'
import type { WebSocketServer } from 'ws'
import type { AppContext } from '../app-context.js'
import type { AdmissionOutcome } from '../admission/admission-outcome.js'
import { SUBPROTOCOL_V2 } from '@poolcoord/protocol'
import { parseBearer } from '../tokens/token.js'
import type { PendingLimiter } from './pending-limiter.js'
import { handleProviderConnection, type UpgradeAuth } from './provider-connection.js'

export const PROVIDER_PATH = '/ws/provider'

/**
 * The HTTP 'upgrade' listener for /ws/provider. A bearer is checked here, with one atomic
 * validate-and-mark statement, before the WebSocket exists. Failures still complete the upgrade
 * and then close 4005, so that provider binaries see one uniform rejection.
 */
export function createUpgradeHandler(ctx: AppContext, wss: WebSocketServer, pending: PendingLimiter, accepting: () => boolean, origin: () => string) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', destroyOnError)
    // An exception escaping an event listener would take the process down: contain everything.
    try {
      onUpgrade(req, socket, head)
    } catch (err) {
      ctx.log.error({ err }, 'provider upgrade failed')
      socket.destroy()
    }
  }

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = parseTarget(req.url)
    if (url === null) return rejectUpgrade(socket, 400, 'Bad Request')
    if (url.pathname !== PROVIDER_PATH) return rejectUpgrade(socket, 404, 'Not Found')
    if (!accepting()) return rejectUpgrade(socket, 503, 'Service Unavailable')
    const peer = peerAddress(req, ctx.config.trustProxy)
    // Evicted to make room for a connection from a smaller prefix: cut without a word (the
    // connections a flood leaves pending are silent ones).
    // Before the WebSocket exists the raw socket is destroyed; after, ws.terminate() also marks the
    // WebSocket closed at once, so an admission finishing in between sees it gone.
    let evict = (): void => void socket.destroy()
    const slot = pending.acquire(peer, () => evict())
    if (slot === null) {
      ctx.metrics.admission('admission.pool_full')
      ctx.log.warn({ event: 'admission.pool_full', peer }, 'too many pending provider connections')
      return rejectUpgrade(socket, 429, 'Too Many Requests')
    }
    // ws aborts a malformed handshake without ever calling back: the slot must follow the socket.
    const release = slot.release
    socket.once('close', release)
    const startedAt = performance.now()
    const v2 = offersV2(req.headers['sec-websocket-protocol'])
    authenticate(ctx, req, url, v2).then(
      (auth) => {
        if (socket.destroyed) return release()
        socket.removeListener('error', destroyOnError)
        // What the socket speaks is what ws selected (selectSubprotocol), so both sides agree even
        // where offersV2 gave up on an oversized header.
        wss.handleUpgrade(req, socket, head, (ws) => {
          evict = () => ws.terminate()
          handleProviderConnection(ctx, ws, {
            auth,
            peer,
            release,
            firstFrame: slot.markActive,
            startedAt,
            v2: ws.protocol === SUBPROTOCOL_V2,
            origin: origin(),
          })
        })
      },
      (err: unknown) => {
        release()
        ctx.log.error({ err }, 'provider upgrade failed')
        socket.destroy()
      },
    )
  }
}

/** The request target as a URL, or null when Node's parser let through something URL does not. */
function parseTarget(target: string | undefined): URL | null {
  try {
    return new URL(target ?? '/', 'http://coordinator')
  } catch {
    return null
  }
}

/**
 * A v2 agent offers `poolcoord.v2`; the WebSocketServer selects it (selectSubprotocol) and the
 * connection's first frame must then be auth_init. Anything else offered is ignored.
 */
function offersV2(header: string | string[] | undefined): boolean {
  if (typeof header !== 'string' || header.length > 256) return false
  return header.split(',').some((p) => p.trim() === SUBPROTOCOL_V2)
}

/** ws's handleProtocols: the one subprotocol we speak, or none (a v1 agent offers none). */
export function selectSubprotocol(offered: Set<string>): string | false {
  return offered.has(SUBPROTOCOL_V2) ? SUBPROTOCOL_V2 : false
}

async function authenticate(ctx: AppContext, req: IncomingMessage, url: URL, v2: boolean): Promise<UpgradeAuth> {
  // A token in a URL ends up in proxy logs: refuse it without looking at it.
  if (url.searchParams.has('token')) return reject('admission.invalid_token')
  const bearer = parseBearer(req.headers.authorization)
  if (bearer.kind === 'malformed') return reject('admission.invalid_token')
  if (bearer.kind === 'absent') {
    // A tokenless v2 connect may still prove a key (recover): its first frame decides.
    return ctx.live.get().requireProviderTokens && !v2 ? reject('admission.tokens_required') : { kind: 'tokenless' }
  }
  try {
    // Read before the statement: a pin committed by this node after this point shows as a new epoch.
    const writeEpoch = ctx.identities.writeEpoch
    const bound = await ctx.tokens.validateAndMarkUsed(bearer.token, ctx.clock.now())
    return bound === null ? reject('admission.invalid_token') : { kind: 'bearer', ...bound, writeEpoch }
  } catch (err) {
    ctx.log.error({ err }, 'token validation failed; failing closed')
    return reject('admission.store_error')
  }
}

function reject(outcome: AdmissionOutcome): UpgradeAuth {
  return { kind: 'reject', outcome }
}

/** The client address; behind a trusted local proxy, the address it reports in X-Real-IP. */
export function peerAddress(req: IncomingMessage, trustProxy: boolean): string {
  const remote = req.socket.remoteAddress ?? 'unknown'
  if (trustProxy && (remote === '127.0.0.1' || remote === '::1' || remote === '::ffff:127.0.0.1')) {
    const real = req.headers['x-real-ip']
    if (typeof real === 'string' && isIP(real.trim()) !== 0) return real.trim()
  }
  return remote
}

function rejectUpgrade(socket: Duplex, status: number, text: string): void {
  if (!socket.writable) return void socket.destroy()
  socket.once('finish', () => socket.destroy())
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}

function destroyOnError(this: Duplex): void {
  this.destroy()
}
