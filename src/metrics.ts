import { Counter, Gauge, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client'
import type { AdmissionEvent, AuthState } from './admission/admission-machine.js'
import type { ProviderSession } from './pool/provider-session.js'
import { routingEligible } from './pool/routing-eligible.js'

/** Outcomes of an upgrade or hello other than the admission table's own events. */
export type AdmissionOutcome =
  | AdmissionEvent
  | 'admission.invalid_token'
  | 'admission.tokens_required'
  | 'admission.registration_refused'
  | 'admission.invalid_hello'
  | 'admission.hello_timeout'
  | 'admission.pool_full'
  | 'admission.busy'
  | 'admission.abandoned'

const AUTH_STATES: AuthState[] = ['bearer_validated', 'self_minted', 'bearerless_duplicate']

export interface Metrics {
  readonly registry: PromRegistry
  admission(outcome: AdmissionOutcome): void
}

/**
 * One prom-client registry per coordinator instance, so tests can run many in one process.
 * Labels take closed sets only: never a token, request id or provider-supplied string.
 */
export function createMetrics(opts: { sessions: () => Iterable<ProviderSession>; defaultMetrics?: boolean }): Metrics {
  const registry = new PromRegistry()
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'poolcoord_' })
  const admissions = new Counter({
    name: 'poolcoord_admissions_total',
    help: 'Provider admission outcomes.',
    labelNames: ['outcome'],
    registers: [registry],
  })
  new Gauge({
    name: 'poolcoord_pool_sessions',
    help: 'Admitted provider sessions by auth state and routability.',
    labelNames: ['auth_state', 'routable'],
    registers: [registry],
    collect() {
      const counts = new Map<string, number>()
      for (const a of AUTH_STATES) for (const r of ['true', 'false']) counts.set(`${a}|${r}`, 0)
      for (const s of opts.sessions()) {
        const key = `${s.authState}|${routingEligible(s).eligible}`
        counts.set(key, (counts.get(key) ?? 0) + 1)
      }
      this.reset()
      for (const [key, n] of counts) {
        const [auth_state, routable] = key.split('|') as [string, string]
        this.set({ auth_state, routable }, n)
      }
    },
  })
  return {
    registry,
    admission: (outcome) => admissions.inc({ outcome: outcome.slice('admission.'.length) }),
  }
}
