import type { CloseSpec } from '@poolcoord/protocol'

/**
 * What the pool and routing need of a provider's connection. The WebSocket shell implements it
 * over a socket (ws/socket-link.ts); nothing below the shells sees a socket.
 */
export interface ProviderLink {
  readonly open: boolean
  /** Bytes queued towards the provider and not yet written. */
  readonly bufferedAmount: number
  send(frame: string): void
  /** Sends a close frame, and cuts the connection if the peer does not finish the handshake. */
  close(spec: CloseSpec): void
}
