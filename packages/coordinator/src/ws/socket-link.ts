import type { CloseSpec } from '@poolcoord/protocol'
import type { WebSocket } from 'ws'
import type { ProviderLink } from '../pool/provider-link.js'

/** How long a closing peer gets to answer our close frame before the socket is cut. */
const CLOSE_GRACE_MS = 2000

/** A provider's socket as the pool sees it. */
export function socketLink(ws: WebSocket): ProviderLink {
  return {
    get open() {
      return ws.readyState === ws.OPEN
    },
    get bufferedAmount() {
      return ws.bufferedAmount
    },
    send: (frame) => ws.send(frame),
    close: (spec) => closeSocket(ws, spec),
  }
}

/** Sends a close frame and cuts the socket if the peer does not finish the handshake. */
export function closeSocket(ws: WebSocket, spec: CloseSpec): void {
  if (ws.readyState === ws.CLOSED) return
  if (ws.readyState !== ws.CLOSING) ws.close(spec.code, spec.reason)
  setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref()
}
