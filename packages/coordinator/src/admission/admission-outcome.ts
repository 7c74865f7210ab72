import type { AdmissionEvent } from './admission-machine.js'

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
  /** Cluster mode: this node is fenced, or NATS could not be asked about the id's lease: fail closed (4005). */
  | 'admission.cluster_unavailable'
