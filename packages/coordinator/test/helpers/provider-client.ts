import { authorizationHeader, encode, hello, type HelloAckMessage } from '@poolcoord/protocol'
import WebSocket from 'ws'

export interface Closed {
  code: number
  reason: string
}

export type HelloAck = HelloAckMessage

export type Outcome = { ack: HelloAck; close?: undefined } | { close: Closed; ack?: undefined }

/** A provider speaking protocol v1 over a real ws client. */
export class ProviderClient {
  readonly closed: Promise<Closed>
  private readonly inbox: unknown[] = []
  private waiters: Array<() => void> = []
  private closeInfo: Closed | null = null

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() }
        resolve(this.closeInfo)
        this.wake()
      })
    })
    ws.on('message', (data) => {
      this.inbox.push(JSON.parse(data.toString()))
      this.wake()
    })
    ws.on('error', () => undefined)
  }

  /** `localAddress`: the source address, e.g. 127.0.0.9, so that tests can speak from many loopback addresses. */
  static async connect(
    wsUrl: string,
    opts: { token?: string; authorization?: string; query?: string; subprotocol?: string; localAddress?: string } = {},
  ): Promise<ProviderClient> {
    const headers: Record<string, string> = {}
    if (opts.token !== undefined) headers.authorization = authorizationHeader(opts.token)
    if (opts.authorization !== undefined) headers.authorization = opts.authorization
    const protocols = opts.subprotocol === undefined ? [] : [opts.subprotocol]
    const ws = new WebSocket(wsUrl + (opts.query ?? ''), protocols, {
      headers,
      perMessageDeflate: false,
      ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }),
    })
    const client = new ProviderClient(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)))
      ws.once('error', reject)
    })
    return client
  }

  /** A valid hello; `extra` overrides fields, which is how tests send invalid ones. */
  hello(providerId: string, extra: Record<string, unknown> = {}): void {
    const msg = hello({
      provider_id: providerId,
      hostname: `${providerId}.local`,
      model_id: 'llama-3-8b',
      binary_version: '1.0.0',
      max_concurrency: 2,
      max_context_tokens: 8192,
    })
    this.sendRaw({ ...msg, ...extra })
  }

  send(msg: Parameters<typeof encode>[0]): void {
    this.ws.send(encode(msg))
  }

  /** Any JSON value, for tests of what the coordinator does with frames outside the protocol. Returns the bytes sent. */
  sendRaw(value: unknown): string {
    const text = JSON.stringify(value)
    this.ws.send(text)
    return text
  }

  /** The hello's result: hello_ack, or the close that refused it. */
  async outcome(): Promise<Outcome> {
    for (;;) {
      const msg = this.inbox.shift()
      if (msg !== undefined) return { ack: msg as HelloAck }
      if (this.closeInfo) return { close: this.closeInfo }
      await new Promise<void>((resolve) => this.waiters.push(resolve))
    }
  }

  close(): Promise<Closed> {
    this.ws.close(1000)
    return this.closed
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** Connects, says hello, and returns the result. The socket stays open if admitted. */
export async function join(
  wsUrl: string,
  providerId: string,
  opts: { token?: string; hello?: Record<string, unknown>; localAddress?: string } = {},
): Promise<{ client: ProviderClient } & Outcome> {
  const client = await ProviderClient.connect(wsUrl, { token: opts.token, localAddress: opts.localAddress })
  client.hello(providerId, opts.hello)
  return { client, ...(await client.outcome()) }
}
