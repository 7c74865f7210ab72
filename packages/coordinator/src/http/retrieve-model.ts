import { ModelNotFoundError } from '../errors.js'
import type { ProviderSession } from '../pool/provider-session.js'
import { listModels, type ModelEntry } from '../routing/list-models.js'
import { MODEL_MAX } from './chat-request.js'

/**
 * A percent-encoded id of MODEL_MAX UTF-16 units is at most 9 times as long (three UTF-8 bytes
 * per unit, three characters per byte): anything longer is refused before decoding.
 */
const MAX_ENCODED = MODEL_MAX * 9

/**
 * GET /v1/models/{id}: the entry GET /v1/models has for that id, by the same rule (some
 * routable provider serves it), or 404 `model_not_found`.
 *
 * `raw` is everything after `/v1/models/` up to any `?`, slashes included, because model ids
 * hold them (`meta-llama/Llama-3-8B`): some clients send them raw, others as `%2F`. It is
 * percent-decoded once; an undecodable path, or an id that no chat request could name (empty,
 * over MODEL_MAX, control characters), is answered as an unknown model.
 */
export function retrieveModel(sessions: Iterable<ProviderSession>, created: number, raw: string): ModelEntry {
  const id = decodeModelId(raw)
  const entry = id === null ? undefined : listModels(sessions, created).data.find((m) => m.id === id)
  if (entry === undefined) throw new ModelNotFoundError()
  return entry
}

export function decodeModelId(raw: string): string | null {
  if (raw.length > MAX_ENCODED) return null
  let id: string
  try {
    id = decodeURIComponent(raw)
  } catch {
    return null
  }
  if (id.length === 0 || id.length > MODEL_MAX || /[\u0000-\u001f\u007f]/.test(id)) return null
  return id
}
