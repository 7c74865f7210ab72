/**
 * One request to the backend over node:http, from the POST to the end status: the rows of the
 * outcome table in backend-client.ts, the bounds, backpressure and cancellation. Listeners
 * rather than async iterators: a read costs one callback, not a promise and an iterator step.
 */
import type { Agent, ClientRequest, IncomingMessage, RequestOptions, request } from 'node:http'
import type { EndStatus, Usage } from '@poolcoord/protocol'
import { endStatusOfHttp, endStatusOfNetworkError } from './backend-outcome.js'
import { MAX_PIECE, lastPieceStart, sendRange, type Send } from './send-pieces.js'
import { SseUsage, usageOfJson } from './sse-usage.js'

export interface BackendResult {
  status: EndStatus
  usage: Usage | null
  /** A log-safe reason for a failure, for the end frame's `error.code`. */
  errorCode?: string
  /** With `holdLast`: the answer's last piece, not sent as a chunk, for the end frame (FEATURE_END_DATA). */
  data?: string
}

/** The bounds, overridable so that tests need not send 256 Mi characters. */
export interface BackendLimits {
  heldBytes: number
  streamedChars: number
  errorBody: number
}

/** One request to the backend, under way. */
export interface BackendCall {
  /** Never rejects. */
  readonly result: Promise<BackendResult>
  readonly cancelled: boolean
  /** Stops the call at once: the request is destroyed, nothing more is sent, the result is `cancelled`. */
  cancel(): void
}

/** Where and how calls go: built once by BackendClient. */
export interface CallTarget {
  request: typeof request
  agent: Agent
  options: RequestOptions
  limits: BackendLimits
}

const BROKEN: BackendResult = { status: 'error_internal', usage: null, errorCode: 'backend_stream_broken' }
const CANCELLED: BackendResult = { status: 'cancelled', usage: null }
/** The last event of an OpenAI stream: nothing the buyer waits for comes after it. */
const DONE_EVENT = 'data: [DONE]\n\n'

export class HttpCall implements BackendCall {
  readonly result: Promise<BackendResult>
  private settle!: (r: BackendResult) => void
  private done = false
  private wasCancelled = false
  private req: ClientRequest | null = null
  private res: IncomingMessage | null = null
  private ended = false
  /** Streaming: a send the coordinator socket has not taken yet; the backend is paused meanwhile. */
  private pending: Promise<void> | undefined = undefined
  private readonly usage: SseUsage | null
  private streamed = 0
  /** Streaming with holdLast: the read that ended in [DONE], kept for the end frame until the answer ends. */
  private tail: string | null = null
  private tailTimer: NodeJS.Immediate | null = null
  private readonly parts: Buffer[] = []
  private held = 0
  /** Nothing reaches the coordinator once the call is over (cancelled, failed, abandoned). */
  private readonly out: Send

  constructor(
    private readonly t: CallTarget,
    private readonly body: string,
    private readonly stream: boolean,
    private readonly send: Send,
    private readonly holdLast: boolean,
  ) {
    this.result = new Promise((resolve) => (this.settle = resolve))
    this.usage = stream ? new SseUsage() : null
    this.out = (data) => (this.done ? undefined : send(data))
    this.start()
  }

  get cancelled(): boolean {
    return this.wasCancelled
  }

  cancel(): void {
    if (this.done) return
    this.wasCancelled = true
    this.finish(CANCELLED)
    this.req?.destroy()
  }

  private finish(r: BackendResult): void {
    if (this.done) return
    const tail = this.takeTail()
    // A stream that fails after its [DONE] still relays what it read, as it would have unheld.
    if (tail !== null && r.status !== 'cancelled') void this.send(tail)
    this.done = true
    this.settle(r)
  }

  /** Ends the call with error_internal and drops the connection: the rest of the answer is not wanted. */
  private abandon(errorCode: string): void {
    this.finish({ status: 'error_internal', usage: null, errorCode })
    this.req?.destroy()
  }

  private start(): void {
    const req = this.t.request({
      ...this.t.options,
      agent: this.t.agent,
      headers: {
        'content-type': 'application/json',
        accept: this.stream ? 'text/event-stream' : 'application/json',
        'content-length': Buffer.byteLength(this.body),
      },
    })
    this.req = req
    req.on('response', (res) => this.onResponse(res))
    req.on('error', (err: NodeJS.ErrnoException) => this.onRequestError(err, req))
    req.end(this.body)
  }

  private onRequestError(err: NodeJS.ErrnoException, req: ClientRequest): void {
    if (this.done || req !== this.req) return
    if (this.res !== null) return this.finish(BROKEN)
    // Never sent again, not even on a reused socket's reset: a backend that read the request and
    // then crashed or was killed resets it just the same, and would run the prompt twice. The
    // coordinator fails an unpinned request over instead.
    const status = endStatusOfNetworkError(err.code)
    this.finish({ status, usage: null, errorCode: status === 'error_model_not_loaded' ? `backend_${err.code}` : 'backend_unreachable' })
  }

  private onResponse(res: IncomingMessage): void {
    this.res = res
    res.on('error', () => this.finish(BROKEN))
    res.on('close', () => this.ended || this.finish(BROKEN))
    const code = res.statusCode ?? 0
    if (code < 200 || code > 299) return this.onErrorStatus(res, code)
    if (code === 204 || code === 205) return this.onErrorStatus(res, code, 'backend_empty')
    if (this.stream) {
      // The decoder keeps a multi-byte character cut between two reads until its last byte comes.
      res.setEncoding('utf8')
      res.on('data', (text: string) => this.onText(text))
    } else {
      res.on('data', (bytes: Buffer) => this.onBytes(bytes))
    }
    res.on('end', () => this.onEnd())
  }

  private onText(text: string): void {
    if (this.done) return
    try {
      this.streamed += text.length
      if (this.streamed > this.t.limits.streamedChars) return this.abandon('backend_answer_too_large')
      this.usage!.feed(text)
      const tail = this.takeTail()
      if (tail !== null) this.relay(tail)
      // The read that ends the stream goes in the end frame when the coordinator takes it there:
      // one frame fewer per stream. Only that read, and only until this turn of the event loop
      // ends, so a backend that keeps the response open after [DONE] delays nothing.
      if (this.holdLast && this.pending === undefined && text.length <= MAX_PIECE && text.endsWith(DONE_EVENT)) {
        this.tail = text
        this.tailTimer = setImmediate(this.flushTail)
        return
      }
      this.relay(text)
    } catch {
      // A fault of the agent's own (never the backend's): the request fails, the agent serves on.
      this.abandon('agent_error')
    }
  }

  private readonly flushTail = (): void => {
    this.tailTimer = null
    const tail = this.takeTail()
    if (tail !== null && !this.done) this.relay(tail)
  }

  private takeTail(): string | null {
    const tail = this.tail
    if (tail === null) return null
    this.tail = null
    if (this.tailTimer !== null) clearImmediate(this.tailTimer)
    this.tailTimer = null
    return tail
  }

  private relay(text: string): void {
    const wait = this.pending === undefined ? sendRange(text, 0, text.length, this.out) : this.pending.then(() => sendRange(text, 0, text.length, this.out))
    if (wait === undefined) return
    // Backpressure: while the coordinator socket is backed up, stop reading the backend.
    const res = this.res!
    res.pause()
    const pending: Promise<void> = wait.then(() => {
      if (this.pending !== pending) return
      this.pending = undefined
      if (!this.done) res.resume()
    })
    this.pending = pending
  }

  private onBytes(bytes: Buffer): void {
    if (this.done) return
    this.held += bytes.length
    if (this.held > this.t.limits.heldBytes) return this.abandon('backend_answer_too_large')
    this.parts.push(bytes)
  }

  private onEnd(): void {
    this.ended = true
    if (this.done) return
    if (this.pending !== undefined) void this.pending.then(() => this.complete())
    else this.complete()
  }

  private complete(): void {
    if (this.done) return
    try {
      this.deliver()
    } catch {
      this.abandon('agent_error')
    }
  }

  private deliver(): void {
    if (this.usage !== null) {
      const tail = this.takeTail()
      return this.finish(tail === null ? { status: 'complete', usage: this.usage.usage } : { status: 'complete', usage: this.usage.usage, data: tail })
    }
    const text = this.parts.length === 1 ? this.parts[0]!.toString('utf8') : Buffer.concat(this.parts, this.held).toString('utf8')
    if (text.length === 0) return this.finish({ status: 'error_internal', usage: null, errorCode: 'backend_empty' })
    const usage = usageOfJson(text)
    // The earlier pieces go as chunks; the last one in the end frame when the coordinator takes it there.
    const last = this.holdLast ? lastPieceStart(text) : text.length
    const done = (): void => this.finish(last < text.length ? { status: 'complete', usage, data: text.slice(last) } : { status: 'complete', usage })
    const wait = sendRange(text, 0, last, this.out)
    if (wait === undefined) done()
    else void wait.then(done)
  }

  /**
   * A status other than 2xx: only a 400's body matters (it may say context_length_exceeded). Any
   * other body is read and dropped, up to the error bound, so the socket can serve the next request.
   */
  private onErrorStatus(res: IncomingMessage, code: number, errorCode = `backend_http_${code}`): void {
    const parts: Buffer[] = []
    let size = 0
    const needBody = code === 400
    const decide = (): void => this.finish({ status: endStatusOfHttp(code, Buffer.concat(parts).toString('utf8')), usage: null, errorCode })
    if (!needBody) {
      // Nothing in the body matters, and one that never ends must not hold a pool socket: close it.
      this.finish({ status: endStatusOfHttp(code, ''), usage: null, errorCode })
      this.ended = true
      res.destroy()
      return
    }
    res.on('data', (bytes: Buffer) => {
      size += bytes.length
      if (size > this.t.limits.errorBody) {
        // Too long for an error: what was read decides (not JSON: an ordinary error).
        decide()
        res.destroy()
      } else if (needBody) parts.push(bytes)
    })
    res.on('end', () => {
      this.ended = true
      decide()
    })
  }
}
