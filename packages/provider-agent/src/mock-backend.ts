/**
 * A small OpenAI-compatible inference server for tests, the demo and the benchmarks: what a
 * provider agent would put in front of Ollama or llama-server, minus the model. Answers are
 * deterministic: the same request gets the same tokens.
 *
 * Error injection, per request, from the start of the last message's content:
 *   `mock:error=<status>`  answer with that HTTP status and an OpenAI error body
 *   `mock:hang`            send nothing until the client goes away (for cancel tests)
 *   `mock:tokens=<n>`      answer with n tokens instead of the configured number
 *   `mock:cut=<n>`         stream n tokens, then drop the connection mid-answer
 * and, for every request, `failEvery: n` makes each n-th request a 500.
 */
import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface MockBackendOptions {
  host?: string
  port?: number
  models?: string[]
  /** Tokens per answer. */
  tokens?: number
  /** Delay before the first token. */
  latencyMs?: number
  /** Tokens per second after the first; 0 sends them all at once. */
  tokenRate?: number
  /** Every n-th chat request fails with 500; 0 never. */
  failEvery?: number
}

export interface MockBackendStats {
  requests: number
  completed: number
  /** Requests whose client went away before the answer was complete. */
  aborted: number
}

const MAX_BODY = 4 * 1024 * 1024
const WORDS = ['This', ' is', ' a', ' deterministic', ' answer', ' from', ' the', ' poolcoord', ' mock', ' backend', '.']

export class MockBackend extends EventEmitter {
  readonly stats: MockBackendStats = { requests: 0, completed: 0, aborted: 0 }
  readonly models: string[]
  private readonly server: Server
  private readonly opts: Required<Omit<MockBackendOptions, 'host' | 'port' | 'models'>>

  private constructor(opts: MockBackendOptions) {
    super()
    this.models = opts.models?.length ? opts.models : ['mock-llama']
    this.opts = { tokens: opts.tokens ?? 16, latencyMs: opts.latencyMs ?? 0, tokenRate: opts.tokenRate ?? 0, failEvery: opts.failEvery ?? 0 }
    this.server = createServer((req, res) => this.handle(req, res))
  }

  static async start(opts: MockBackendOptions = {}): Promise<MockBackend & { url: string }> {
    const m = new MockBackend(opts)
    await new Promise<void>((resolve, reject) => {
      m.server.once('error', reject)
      m.server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve())
    })
    const { port } = m.server.address() as AddressInfo
    return Object.assign(m, { url: `http://${opts.host ?? '127.0.0.1'}:${port}/v1` })
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'GET' && path === '/v1/models') {
      json(res, 200, { object: 'list', data: this.models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'poolcoord-mock' })) })
      return
    }
    if (req.method === 'POST' && path === '/v1/chat/completions') {
      readBody(req)
        .then((body) => this.chat(body, res))
        .catch(() => error(res, 400, 'invalid_request_error', 'the body is not a JSON object of at most 4 MiB'))
      return
    }
    error(res, 404, 'not_found', 'no such route')
  }

  private async chat(body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    this.stats.requests++
    const n = this.stats.requests
    const model = typeof body.model === 'string' ? body.model : ''
    if (!this.models.includes(model)) return error(res, 404, 'invalid_request_error', `model "${model.slice(0, 64)}" not found`, 'model_not_found')
    const directive = lastContent(body)
    const forced = /^mock:error=(\d{3})/.exec(directive)
    if (forced) return error(res, Number(forced[1]), 'mock_error', 'injected error')
    if (this.opts.failEvery > 0 && n % this.opts.failEvery === 0) return error(res, 500, 'mock_error', 'injected failure')

    let gone = false
    res.on('close', () => {
      if (!res.writableFinished) {
        gone = true
        this.stats.aborted++
        this.emit('aborted')
      }
    })
    if (directive.startsWith('mock:hang')) {
      this.emit('hanging')
      return
    }
    const count = Number(/^mock:tokens=(\d{1,6})/.exec(directive)?.[1] ?? this.opts.tokens)
    const cut = /^mock:cut=(\d{1,6})/.exec(directive)
    // Each pass over WORDS after the first starts a new sentence.
    const tokens = Array.from({ length: count }, (_, i) => (i > 0 && i % WORDS.length === 0 ? ' ' : '') + WORDS[i % WORDS.length]!)
    const usage = { prompt_tokens: promptTokens(body), completion_tokens: count, total_tokens: promptTokens(body) + count }
    const id = `chatcmpl-mock-${n}`
    const created = Math.floor(Date.now() / 1000)
    await delay(this.opts.latencyMs)

    if (body.stream !== true) {
      if (gone) return
      this.stats.completed++
      json(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: tokens.join('') }, finish_reason: 'stop' }],
        usage,
      })
      return
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    const event = (payload: unknown): void => void res.write(`data: ${JSON.stringify(payload)}\n\n`)
    const chunk = (delta: Record<string, unknown>, finish: string | null): void =>
      event({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] })
    for (let i = 0; i < tokens.length; i++) {
      if (gone) return
      if (cut && i === Number(cut[1])) {
        res.destroy()
        return
      }
      chunk(i === 0 ? { role: 'assistant', content: tokens[i] } : { content: tokens[i] }, null)
      if (this.opts.tokenRate > 0) await delay(1000 / this.opts.tokenRate)
    }
    if (gone) return
    chunk({}, 'stop')
    const options = body.stream_options as { include_usage?: unknown } | undefined
    if (options?.include_usage === true) event({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })
    res.end('data: [DONE]\n\n')
    this.stats.completed++
  }
}

function lastContent(body: Record<string, unknown>): string {
  const messages = Array.isArray(body.messages) ? body.messages : []
  const last = messages[messages.length - 1] as { content?: unknown } | undefined
  return typeof last?.content === 'string' ? last.content : ''
}

function promptTokens(body: Record<string, unknown>): number {
  const messages = Array.isArray(body.messages) ? body.messages : []
  let words = 0
  for (const m of messages) {
    const c = (m as { content?: unknown }).content
    if (typeof c === 'string') words += c.split(/\s+/).filter(Boolean).length
  }
  return words
}

function delay(ms: number): Promise<void> {
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve()
}

function json(res: ServerResponse, status: number, payload: unknown): void {
  const text = JSON.stringify(payload)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

function error(res: ServerResponse, status: number, type: string, message: string, code: string | null = null): void {
  json(res, status, { error: { message, type, code } })
}

function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let size = 0
    req.on('data', (b: Buffer) => {
      size += b.length
      if (size > MAX_BODY) {
        req.destroy()
        reject(new Error('too large'))
      } else parts.push(b)
    })
    req.on('end', () => {
      try {
        const v = JSON.parse(Buffer.concat(parts).toString('utf8')) as unknown
        if (typeof v !== 'object' || v === null || Array.isArray(v)) reject(new Error('not an object'))
        else resolve(v as Record<string, unknown>)
      } catch (err) {
        reject(err)
      }
    })
    req.on('error', reject)
  })
}
