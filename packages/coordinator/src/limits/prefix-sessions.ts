import type { AuthState } from '@poolcoord/protocol'
import { addressKeys } from './address-prefix.js'

/** Unproven sessions: a self-minted token, or a quarantined duplicate with none. */
export function isUnproven(state: AuthState): boolean {
  return state === 'self_minted' || state === 'bearerless_duplicate'
}

/**
 * Admitted sessions per address (IPv4 /32, IPv6 /64): all of them, and the unproven ones, each
 * under its own cap (specs/admission.md §7.3). Tokenless admission is open by default, so without
 * the second cap one host could fill the pool with identities it minted itself (issue 15: 500 of
 * 500 admitted from one address).
 */
export class PrefixSessions {
  private readonly counts = new Map<string, { all: number; unproven: number }>()

  constructor(
    private readonly maxPerAddress: number,
    private readonly maxUnprovenPerAddress: number,
  ) {}

  /** Whether `peer` has room for one more session, unproven or not: the cheap check before any store work. */
  hasRoom(peer: string, unproven: boolean): boolean {
    const c = this.counts.get(addressKeys(peer).address)
    if (c === undefined) return true
    return c.all < this.maxPerAddress && (!unproven || c.unproven < this.maxUnprovenPerAddress)
  }

  /**
   * Counts one more session; its release (idempotent) when it closes. Null when the address is
   * full, unless `replacing`: a session that replaces one of its own id leaves the count as it was
   * once the old one has closed.
   */
  reserve(peer: string, state: AuthState, replacing: boolean): (() => void) | null {
    const key = addressKeys(peer).address
    const unproven = isUnproven(state)
    const c = this.counts.get(key) ?? { all: 0, unproven: 0 }
    if (!replacing && (c.all >= this.maxPerAddress || (unproven && c.unproven >= this.maxUnprovenPerAddress))) return null
    c.all++
    if (unproven) c.unproven++
    this.counts.set(key, c)
    let released = false
    return () => {
      if (released) return
      released = true
      c.all--
      if (unproven) c.unproven--
      if (c.all === 0) this.counts.delete(key)
    }
  }
}
