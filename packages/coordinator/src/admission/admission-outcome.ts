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
  /** A credential-less admission or a key recovery over its rate limit (4008); limits/mint-limiter.ts. */
  | 'admission.mint_rate_limited'
  /** The rate limiter's store failed: fail closed (4005). */
  | 'admission.limiter_error'
  /** No hello_ack within the admission deadline (4009). */
  | 'admission.deadline'
  /** The peer's address already holds its share of sessions (4429 prefix_full). */
  | 'admission.prefix_full'
  /** Cluster mode: this node is fenced, or NATS could not be asked about the id's lease: fail closed (4005). */
  | 'admission.cluster_unavailable'
