/**
 * Writes one session's frames. Under load many requests' frames are produced in one turn of the
 * event loop (a read from each backend socket that had data); held until the turn ends, they
 * leave in one system call instead of one each, and the coordinator reads them in one too (issue
 * 16). A write costs more CPU than the frame it carries, so this matters more than anything else
 * on the agent's side. Past a high-water mark, a send tells its caller to wait.
 */
import type { Duplex } from 'node:stream'
import WebSocket, { type ClientOptions } from 'ws'
import { LOOPBACK_HOSTS } from './agent-config.js'

/** Past this many bytes queued on the socket, a request waits for the socket before reading on. */
const HIGH_WATER_BYTES = 4 * 1024 * 1024

export class FrameWriter {
  /** The socket under the WebSocket: corked for the rest of a turn at its first frame. */
  private socket: Duplex | null = null
  private corked = false
  private turnEnding = false

  /** `beforeFlush` runs at the end of every turn that wrote or asked for it (the session's coalesced heartbeat). */
  constructor(
    private readonly ws: WebSocket,
    private readonly beforeFlush: () => void,
  ) {}

  /** The socket ws upgraded (from its `upgrade` event): the same one it writes to. */
  attach(socket: Duplex): void {
    this.socket = socket
  }

  /** Sends a text frame; a promise means the socket is backed up: wait before sending more. */
  send(text: string): Promise<void> | undefined {
    if (this.ws.readyState !== WebSocket.OPEN) return undefined
    if (!this.corked && this.socket !== null) {
      this.corked = true
      this.socket.cork()
      this.atTurnEnd()
    }
    if (this.ws.bufferedAmount < HIGH_WATER_BYTES) {
      this.ws.send(text)
      return undefined
    }
    return new Promise((resolve) => this.ws.send(text, () => resolve()))
  }

  /** Runs beforeFlush, then writes what the turn queued, once the turn's callbacks are done. */
  atTurnEnd(): void {
    if (this.turnEnding) return
    this.turnEnding = true
    setImmediate(this.endTurn)
  }

  private readonly endTurn = (): void => {
    // Still marked as ending: a frame beforeFlush sends joins this write instead of the next turn's.
    this.beforeFlush()
    this.turnEnding = false
    if (this.corked) {
      this.corked = false
      this.socket?.uncork()
    }
  }
}

/**
 * RFC 6455 masks a client's frames so that script in a browser cannot put bytes of its choosing
 * on the wire for a proxy that does not speak WebSocket to misread. Over TLS no intermediary reads
 * them, and on loopback there is none: there the mask would only cost a copy of every frame. ws
 * sends a frame whose mask is zero as it is, so the mask is left zero. Elsewhere (ws:// with
 * --insecure) frames keep ws's random mask.
 */
export function maskOption(url: string): Pick<ClientOptions, 'generateMask'> {
  const u = new URL(url)
  return u.protocol === 'wss:' || LOOPBACK_HOSTS.includes(u.hostname) ? { generateMask: leaveMaskZero } : {}
}

function leaveMaskZero(): void {}
