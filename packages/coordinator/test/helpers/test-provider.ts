import {
  heartbeat,
  responseChunk,
  responseEnd,
  type CancelRequestMessage as CancelRequest,
  type EndStatus,
  type InferenceRequestMessage as InferenceRequest,
  type ProviderStatus,
  type Usage,
} from '@poolcoord/protocol'
import { join, type HelloAck, type ProviderClient } from './provider-client.js'

export type { CancelRequest, InferenceRequest }

type Handler = (req: InferenceRequest, p: TestProvider) => void | Promise<void>

/**
 * A provider for buyer-side tests: a real ws client that has been admitted, records what it is
 * sent, tracks how many requests it holds at once, and answers with scripted frames.
 */
export class TestProvider {
  readonly requests: InferenceRequest[] = []
  readonly cancels: CancelRequest[] = []
  /** Requests received and not yet ended or cancelled. */
  active = 0
  /** The most it ever held at once. */
  maxActive = 0
  private handler: Handler | null = null
  private waiters: Array<() => void> = []
  private readonly seq = new Map<string, number>()

  private constructor(
    readonly id: string,
    readonly client: ProviderClient,
    readonly ack: HelloAck,
  ) {
    client.ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as { type: string }
      if (msg.type === 'inference_request') {
        const req = msg as InferenceRequest
        this.requests.push(req)
        this.active++
        this.maxActive = Math.max(this.maxActive, this.active)
        if (this.handler) void this.handler(req, this)
      } else if (msg.type === 'cancel_request') {
        this.cancels.push(msg as CancelRequest)
        this.active--
      }
      this.wake()
    })
    client.ws.on('close', () => this.wake())
  }

  static async join(wsUrl: string, id: string, opts: { token?: string; hello?: Record<string, unknown>; handler?: Handler } = {}): Promise<TestProvider> {
    const r = await join(wsUrl, id, { token: opts.token, hello: { model_id: 'test-model', max_concurrency: 4, ...opts.hello } })
    if (r.ack === undefined) throw new Error(`${id} was not admitted: ${r.close.code} ${r.close.reason}`)
    const p = new TestProvider(id, r.client, r.ack)
    if (opts.handler) p.handler = opts.handler
    return p
  }

  serve(handler: Handler): this {
    this.handler = handler
    return this
  }

  /** Resolves with the n-th request this provider receives (0-based), waiting if needed. */
  async request(n = 0): Promise<InferenceRequest> {
    await this.until(() => this.requests.length > n, `request ${n} at ${this.id}`)
    return this.requests[n] as InferenceRequest
  }

  async cancel(n = 0): Promise<CancelRequest> {
    await this.until(() => this.cancels.length > n, `cancel ${n} at ${this.id}`)
    return this.cancels[n] as CancelRequest
  }

  chunk(requestId: string, data: string): void {
    const seq = this.seq.get(requestId) ?? 0
    this.seq.set(requestId, seq + 1)
    this.client.send(responseChunk(requestId, seq, data))
  }

  end(requestId: string, status: EndStatus = 'complete', usage?: Usage): void {
    this.active--
    this.client.send(responseEnd(requestId, status, { usage }))
  }

  heartbeat(status: ProviderStatus, slotsFree = 4, slotsTotal = 4): void {
    this.client.send(heartbeat(status, slotsTotal, slotsFree))
  }

  /** Cuts the TCP connection with no close frame: a crash or a pulled cable. */
  crash(): void {
    this.client.ws.terminate()
  }

  close(): Promise<unknown> {
    return this.client.close()
  }

  private async until(cond: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5000
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** The tokens a scripted provider answers with, so tests can check content and order. */
export const TOKENS = ['Hello', ',', ' pool', '!', ' One', ' two', ' three', '.']

/** Answers like an OpenAI-compatible server: SSE chunks when streaming, one JSON body otherwise. */
export function answer(tokens: string[] = TOKENS): Handler {
  return (req, p) => {
    const model = (JSON.parse(req.body) as { model: string }).model
    const usage = { prompt_tokens: 5, completion_tokens: tokens.length, total_tokens: 5 + tokens.length }
    if (req.stream) {
      for (const [i, t] of tokens.entries()) {
        const chunk = {
          id: 'chatcmpl-test',
          object: 'chat.completion.chunk',
          created: 1,
          model,
          choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: t } : { content: t }, finish_reason: null }],
        }
        p.chunk(req.request_id, `data: ${JSON.stringify(chunk)}\n\n`)
      }
      p.chunk(req.request_id, 'data: [DONE]\n\n')
    } else {
      const body = JSON.stringify({
        id: 'chatcmpl-test',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: tokens.join('') }, finish_reason: 'stop' }],
        usage,
      })
      // Split across frames: the coordinator must concatenate them in order.
      const third = Math.ceil(body.length / 3)
      for (let i = 0; i < body.length; i += third) p.chunk(req.request_id, body.slice(i, i + third))
    }
    p.end(req.request_id, 'complete', usage)
  }
}
