import { Close, type CloseSpec } from '@poolcoord/protocol'
import type { AdmissionOutcome } from '../admission/admission-outcome.js'

/** The close for an admission that did not succeed: the one place admission outcomes map to close codes. */
export function closeForOutcome(outcome: AdmissionOutcome): CloseSpec {
  switch (outcome) {
    case 'admission.busy':
      return Close.admissionBusy
    case 'admission.prefix_full':
      return Close.prefixFull
    case 'admission.mint_rate_limited':
      return Close.mintRateLimited
    default:
      return Close.invalidToken
  }
}
