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
 */
import { parseUsage, type EndStatus, type Usage } from '@poolcoord/protocol'

/** Characters per chunk frame; at most 4 bytes each in UTF-8, JSON escaping aside, well under 1 MiB. */
export const MAX_PIECE = 128 * 1024
/** A non-streaming answer is held whole to read its usage; the coordinator's own cap is 16 MiB. */
const MAX_HELD_BYTES = 16 * 1024 * 1024
/** A stream longer than this is a runaway backend; the coordinator's request deadline would end it later anyway. */
const MAX_STREAMED_CHARS = 256 * 1024 * 1024
const MAX_ERROR_BODY = 64 * 1024
const MAX_SSE_LINE = 1024 * 1024

export interface BackendResult {
  status: EndStatus
  usage: Usage | null
  /** A log-safe reason for a failure, for the end frame's `error.code`. */
  errorCode?: string
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])

export async function forwardToBackend(
  backendUrl: string,
  body: string,
  stream: boolean,
  signal: AbortSignal,
  send: (data: string) => Promise<void> | undefined,
): Promise<BackendResult> {
  let res: Response
  try {
    res = await fetch(`${backendUrl}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json' },
      body,
      signal,
    })
  } catch (err) {
    if (signal.aborted) return { status: 'cancelled', usage: null }
    const code = causeCode(err)
    if (code !== undefined && UNREACHABLE.has(code)) return { status: 'error_model_not_loaded', usage: null, errorCode: `backend_${code}` }
    return { status: 'error_internal', usage: null, errorCode: 'backend_unreachable' }
  }
  if (!res.ok) return { status: await statusForError(res), usage: null, errorCode: `backend_http_${res.status}` }
  if (res.body === null) return { status: 'error_internal', usage: null, errorCode: 'backend_empty' }

  const decoder = new TextDecoder('utf-8')
  const usage = stream ? new SseUsage() : null
  let held = ''
  let heldBytes = 0
  let streamed = 0
  try {
    for await (const bytes of res.body) {
      const text = decoder.decode(bytes as Uint8Array, { stream: true })
      if (stream) {
        usage!.feed(text)
        streamed += text.length
        if (streamed > MAX_STREAMED_CHARS) return abandon(res, 'backend_answer_too_large')
        // Backpressure: while the coordinator socket is backed up, stop reading the backend.
        await sendInPieces(text, send)
      } else {
        heldBytes += (bytes as Uint8Array).byteLength
        if (heldBytes > MAX_HELD_BYTES) return abandon(res, 'backend_answer_too_large')
        held += text
      }
    }
    const tail = decoder.decode()
    if (stream) {
      usage!.feed(tail)
      await sendInPieces(tail, send)
      return { status: 'complete', usage: usage!.usage }
    }
    held += tail
  } catch {
    if (signal.aborted) return { status: 'cancelled', usage: null }
    return { status: 'error_internal', usage: null, errorCode: 'backend_stream_broken' }
  }
  await sendInPieces(held, send)
  return { status: 'complete', usage: usageOfJson(held) }
}

function abandon(res: Response, errorCode: string): BackendResult {
  void res.body?.cancel().catch(() => {})
  return { status: 'error_internal', usage: null, errorCode }
}

async function sendInPieces(text: string, send: (data: string) => Promise<void> | undefined): Promise<void> {
  let i = 0
  while (i < text.length) {
    let end = Math.min(text.length, i + MAX_PIECE)
    // Never cut a surrogate pair in two.
    if (end < text.length && /[\uD800-\uDBFF]/.test(text[end - 1]!)) end--
    const wait = send(text.slice(i, end))
    if (wait !== undefined) await wait
    i = end
  }
}

async function statusForError(res: Response): Promise<EndStatus> {
  if (res.status === 429 || res.status === 503) return drop(res, 'error_queue_full')
  if (res.status === 404) return drop(res, 'error_model_not_loaded')
  if (res.status === 400) {
    const text = await readBounded(res, MAX_ERROR_BODY)
    try {
      const err = (JSON.parse(text) as { error?: { code?: unknown } }).error
      if (err?.code === 'context_length_exceeded') return 'error_context_exceeded'
    } catch {
      // Not JSON: an ordinary 400.
    }
    return 'error_internal'
  }
  return drop(res, 'error_internal')
}

async function drop(res: Response, status: EndStatus): Promise<EndStatus> {
  await res.body?.cancel().catch(() => {})
  return status
}

async function readBounded(res: Response, max: number): Promise<string> {
  if (res.body === null) return ''
  const parts: Uint8Array[] = []
  let size = 0
  for await (const bytes of res.body) {
    size += (bytes as Uint8Array).byteLength
    if (size > max) {
      await res.body.cancel().catch(() => {})
      break
    }
    parts.push(bytes as Uint8Array)
  }
  return Buffer.concat(parts).toString('utf8')
}

function causeCode(err: unknown): string | undefined {
  const cause = (err as { cause?: { code?: unknown } }).cause
  return typeof cause?.code === 'string' ? cause.code : undefined
}

function usageOfJson(text: string): Usage | null {
  try {
    return parseUsage((JSON.parse(text) as { usage?: unknown }).usage)
  } catch {
    return null
  }
}

/** Watches an SSE stream for the `usage` an OpenAI server sends in its last events. */
export class SseUsage {
  usage: Usage | null = null
  private line = ''

  feed(text: string): void {
    const lines = (this.line + text).split('\n')
    this.line = lines.pop() ?? ''
    if (this.line.length > MAX_SSE_LINE) this.line = ''
    for (const l of lines) {
      if (!l.startsWith('data:') || !l.includes('"usage"')) continue
      try {
        const u = parseUsage((JSON.parse(l.slice(5)) as { usage?: unknown }).usage)
        if (u !== null) this.usage = u
      } catch {
        // Not JSON ([DONE], a comment): nothing to read.
      }
    }
  }
}
