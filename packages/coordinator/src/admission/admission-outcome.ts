import type { AdmissionEvent } from './admission-machine.js'
import type { KeyAdmissionEvent } from './key-admission.js'

/** Outcomes of an upgrade or hello other than the admission table's own events. */
export type AdmissionOutcome =
  | AdmissionEvent
  | KeyAdmissionEvent
  /** Identity v2: the proof did not verify, named another challenge, or came too late (closes 4005). */
  | 'admission.proof_invalid'
  | 'admission.challenge_expired'
  /** Identity v2: the store changed between the decision and its write (a racing admission or operator); nothing was written. */
  | 'admission.identity_conflict'
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
