import type { ProviderSession } from '../pool/provider-session.js'
import { effectiveFreeSlots, routingEligible } from '../pool/routing-eligible.js'

export interface ModelEntry {
  id: string
  object: 'model'
  created: number
  owned_by: 'poolcoord'
  /** Providers serving this model that routingEligible admits right now. */
  provider_count: number
  /** Sum of those providers' max_concurrency. */
  total_slots: number
  /** Sum of those providers' effective free slots. */
  free_slots: number
  /** The largest context among them. */
  max_context_tokens: number
}

/**
 * The OpenAI list shape for GET /v1/models. Only providers for which routingEligible holds are
 * counted, and a model appears only while at least one of them serves it: a quarantined
 * duplicate or a draining provider can neither add a model to the list nor inflate its
 * capacity. `created` is the coordinator's start time, in Unix seconds, as the pool has no
 * better date for a model.
 */
export function listModels(sessions: Iterable<ProviderSession>, created: number) {
  const byModel = new Map<string, ModelEntry>()
  for (const s of sessions) {
    if (!routingEligible(s).eligible) continue
    const free = effectiveFreeSlots(s)
    for (const id of s.models) {
      let e = byModel.get(id)
      if (e === undefined) {
        e = { id, object: 'model', created, owned_by: 'poolcoord', provider_count: 0, total_slots: 0, free_slots: 0, max_context_tokens: 0 }
        byModel.set(id, e)
      }
      e.provider_count++
      e.total_slots += s.maxConcurrency
      e.free_slots += free
      e.max_context_tokens = Math.max(e.max_context_tokens, s.maxContextTokens)
    }
  }
  const data = [...byModel.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return { object: 'list' as const, data }
}
