import { once } from 'node:events'
import type { Test } from 'tap'
import WebSocket, { WebSocketServer, type RawData } from 'ws'

export interface FrameTap {
  /** Where the agent dials instead of the coordinator. */
  url: string
  /** Every frame the agent sent, parsed, in order, across its connections. */
  frames: Array<Record<string, unknown>>
  /** The frames the agent sent for one request. */
  framesFor(requestId: string): Array<Record<string, unknown>>
}

/**
 * A WebSocket relay between an agent and a real coordinator that records what the agent sends:
 * how many frames an answer took is not visible from either end. Protocol v1 only (the agent
 * would sign the relay's origin in an identity v2 proof). The bearer is passed on; a close is
 * passed on with its code where the protocol allows one.
 */
export async function startFrameTap(t: Test, upstreamUrl: string): Promise<FrameTap> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  await once(wss, 'listening')
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())))
  const frames: Array<Record<string, unknown>> = []
  wss.on('connection', (down, req) => {
    const auth = req.headers.authorization
    const up = new WebSocket(upstreamUrl, { headers: auth === undefined ? {} : { authorization: auth }, perMessageDeflate: false })
    // ws hands text frames over as Buffers: they are passed on as text, as they came.
    const early: string[] = []
    down.on('message', (data: RawData) => {
      const text = String(data)
      frames.push(JSON.parse(text) as Record<string, unknown>)
      if (up.readyState === WebSocket.OPEN) up.send(text)
      else early.push(text)
    })
    up.on('open', () => {
      for (const text of early.splice(0)) up.send(text)
    })
    up.on('message', (data: RawData) => down.readyState === WebSocket.OPEN && down.send(String(data)))
    up.on('error', () => down.terminate())
    up.on('close', (code, reason) => {
      if (code === 1000 || (code >= 3000 && code <= 4999)) down.close(code, reason)
      else down.terminate()
    })
    down.on('close', () => up.close())
    down.on('error', () => up.terminate())
  })
  const { port } = wss.address() as { port: number }
  return {
    url: `ws://127.0.0.1:${port}/ws/provider`,
    frames,
    framesFor: (id) => frames.filter((f) => f.request_id === id),
  }
}
