/**
 * Runs one `inference_request` against the local OpenAI-compatible backend and turns the answer
 * into chunk data plus an end status (specs/protocol.md §4).
 *
 * | backend outcome                                   | end status               | coordinator |
 * |---------------------------------------------------|--------------------------|-------------|
 * | 2xx, answer read to the end                       | complete                 | delivered   |
 * | connection refused, host unknown                  | error_model_not_loaded   | fails over  |
 * | 404 (Ollama, vLLM: no such model)                 | error_model_not_loaded   | fails over  |
 * | 429, 503 (busy, queue full, still loading)        | error_queue_full         | fails over  |
 * | 400 with code context_length_exceeded             | error_context_exceeded   | 400 to buyer|
 * | any other status, a broken or oversized answer    | error_internal           | 502 to buyer|
 * | the coordinator cancelled                         | cancelled (not sent)     | —           |
 *
 * Text is relayed as it is decoded, in pieces no larger than MAX_PIECE, so one backend read never
 * makes a frame past the coordinator's 1 MiB limit and a multi-byte character is never split.
 *
 * Why node:http and not fetch: undici's fetch cost 700–800 µs of CPU per request here (web
 * streams, an async iterator per read, per-request objects), more than the agent's own work and
 * the coordinator's together (issue 16). Plain requests over a keep-alive pool cost a fraction.
 */
import http from 'node:http'
import https from 'node:https'
import { HttpCall, type BackendCall, type BackendLimits, type CallTarget } from './backend-call.js'
import type { Send } from './send-pieces.js'

export type { BackendCall, BackendLimits, BackendResult } from './backend-call.js'
export { MAX_PIECE, type Send } from './send-pieces.js'

/** A non-streaming answer is held whole to read its usage; the coordinator's own cap is 16 MiB. */
const MAX_HELD_BYTES = 16 * 1024 * 1024
/** A stream longer than this is a runaway backend; the coordinator's request deadline would end it later anyway. */
const MAX_STREAMED_CHARS = 256 * 1024 * 1024
const MAX_ERROR_BODY = 64 * 1024
/**
 * Idle kept-alive sockets close after this: below the 5 s keep-alive of Node's and uvicorn's
 * servers (vLLM), so the agent rarely reuses a socket its backend is closing at that moment.
 */
const IDLE_TIMEOUT_MS = 4000

export interface BackendClientOptions {
  /** Sockets kept to the backend: the agent's max concurrency, one per request it may serve at once. */
  maxSockets: number
  idleTimeoutMs?: number
  limits?: Partial<BackendLimits>
}

/**
 * The agent's HTTP client for its backend: one keep-alive pool, created once per agent and
 * destroyed when it stops, so the connection set-up is paid once per socket rather than per request.
 */
export class BackendClient {
  private readonly target: CallTarget

  constructor(backendUrl: string, o: BackendClientOptions) {
    const url = new URL(`${backendUrl}/chat/completions`)
    const secure = url.protocol === 'https:'
    const maxSockets = Math.max(1, o.maxSockets)
    const poolOptions: http.AgentOptions = {
      keepAlive: true,
      maxSockets,
      maxFreeSockets: maxSockets,
      maxTotalSockets: maxSockets,
      timeout: o.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
      // The most recently used socket first: the others go idle and time out when load falls.
      scheduling: 'lifo',
    }
    this.target = {
      request: secure ? https.request : http.request,
      agent: secure ? new https.Agent(poolOptions) : new http.Agent(poolOptions),
      options: {
        method: 'POST',
        // URL keeps an IPv6 literal's brackets; the socket layer wants the bare address.
        hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
        path: url.pathname + url.search,
      },
      limits: { heldBytes: MAX_HELD_BYTES, streamedChars: MAX_STREAMED_CHARS, errorBody: MAX_ERROR_BODY, ...o.limits },
    }
  }

  /**
   * POSTs the buyer's body as it is. Pieces of the answer go to `send` as they are decoded. With
   * `holdLast` (the coordinator offered end_data), the answer's last piece comes back in the
   * result instead: a non-streamed answer's always, a stream's when its last read ends in [DONE].
   */
  forward(body: string, stream: boolean, send: Send, holdLast = false): BackendCall {
    return new HttpCall(this.target, body, stream, send, holdLast)
  }

  /** Closes every socket of the pool; requests still under way fail. */
  destroy(): void {
    this.target.agent.destroy()
  }
}
