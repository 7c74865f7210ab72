import { InvalidRequestError } from '../errors.js'
import { PROVIDER_ID_RE } from '@poolcoord/protocol'
import { parseJsonObject } from './json-object.js'

export interface ChatRequest {
  model: string
  stream: boolean
  /** The buyer's JSON exactly as sent: forwarded verbatim, so fields we do not know survive. */
  body: string
}

export const MODEL_MAX = 256

/**
 * Validates a chat completion body just enough to route it. Everything else (sampling
 * parameters, tools, ...) is the provider's business. Error messages name fields only and never
 * echo buyer input.
 */
export function parseChatRequest(raw: string, bytes?: Uint8Array): ChatRequest {
  const o = parseJsonObject(raw, bytes)
  const model = o.model
  if (typeof model !== 'string' || model.length === 0 || model.length > MODEL_MAX || /[\u0000-\u001f\u007f]/.test(model)) {
    throw new InvalidRequestError(`\`model\` is required: a string of 1 to ${MODEL_MAX} characters`)
  }
  if (!Array.isArray(o.messages) || o.messages.length === 0) {
    throw new InvalidRequestError('`messages` is required: a non-empty array')
  }
  // null is allowed and means false: OpenAI's schema makes `stream` nullable, and its clients may send it.
  if (o.stream !== undefined && o.stream !== null && typeof o.stream !== 'boolean') {
    throw new InvalidRequestError('`stream` must be a boolean')
  }
  return { model, stream: o.stream === true, body: raw }
}

/** The X-Pool-Provider hard pin: absent, or exactly one provider_id. */
export function parsePin(header: string | string[] | undefined): string | null {
  if (header === undefined) return null
  if (typeof header !== 'string' || !PROVIDER_ID_RE.test(header)) {
    throw new InvalidRequestError('X-Pool-Provider must be a single provider_id')
  }
  return header
}
