/**
 * Bounds connections that have upgraded but are not yet admitted, overall and per peer address,
 * so that one host cannot hold every pre-auth slot.
 */
export class PendingLimiter {
  private total = 0
  private readonly perPeer = new Map<string, number>()

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerPeer: number,
  ) {}

  /** Takes a slot and returns its release function (idempotent), or null when full. */
  acquire(peer: string): (() => void) | null {
    const mine = this.perPeer.get(peer) ?? 0
    if (this.total >= this.maxTotal || mine >= this.maxPerPeer) return null
    this.total++
    this.perPeer.set(peer, mine + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      this.total--
      const left = (this.perPeer.get(peer) ?? 1) - 1
      if (left <= 0) this.perPeer.delete(peer)
      else this.perPeer.set(peer, left)
    }
  }
}
