import { addressKeys } from '../limits/address-prefix.js'

/** A pre-auth slot: given back once the connection is admitted or gone (idempotent). */
export interface PendingSlot {
  release(): void
  /** The connection sent its first frame: it is cut for a fairer newcomer only after every silent one. */
  markActive(): void
}

interface Slot extends PendingSlot {
  address: string
  active: boolean
  /** Closes the connection holding the slot, to give the slot to a connection from a smaller prefix. */
  evict: () => void
}

/**
 * Bounds connections that have upgraded but are not yet admitted: overall, per address, and
 * fairly between address prefixes (IPv4 /24, IPv6 /48; limits/address-prefix.ts).
 *
 * The overall cap is sized by memory (specs/protocol.md §1.3). When it is reached, a connection
 * from a prefix holding fewer slots than the largest holder takes the oldest slot of that largest
 * prefix, whose connection is cut. So a flood from a few prefixes, however many addresses it
 * has inside them, can only ever take slots from itself: a provider from any other prefix finds
 * room at once. Without this, eight addresses refilling their slots as fast as they expire held
 * every slot of the old fixed cap (issue 15).
 */
export class PendingLimiter {
  private total = 0
  private readonly perAddress = new Map<string, number>()
  /** Each prefix's slots, oldest first (a Set keeps insertion order). */
  private readonly perPrefix = new Map<string, Set<Slot>>()

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerAddress: number,
  ) {}

  /** Takes a slot for `peer`, or returns null when its address or, past fairness, the whole cap is full. */
  acquire(peer: string, evict: () => void): PendingSlot | null {
    const { address, prefix } = addressKeys(peer)
    if ((this.perAddress.get(address) ?? 0) >= this.maxPerAddress) return null
    const mine = this.perPrefix.get(prefix)?.size ?? 0
    if (this.total >= this.maxTotal && !this.evictFromLargest(mine)) return null
    return this.add(address, prefix, evict)
  }

  get pending(): number {
    return this.total
  }

  private add(address: string, prefix: string, evict: () => void): PendingSlot {
    this.total++
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1)
    let slots = this.perPrefix.get(prefix)
    if (slots === undefined) this.perPrefix.set(prefix, (slots = new Set()))
    let released = false
    const slot: Slot = {
      address,
      evict,
      active: false,
      markActive: () => {
        slot.active = true
      },
      release: () => {
        if (released) return
        released = true
        this.total--
        const left = (this.perAddress.get(address) ?? 1) - 1
        if (left <= 0) this.perAddress.delete(address)
        else this.perAddress.set(address, left)
        const set = this.perPrefix.get(prefix)
        set?.delete(slot)
        if (set?.size === 0) this.perPrefix.delete(prefix)
      },
    }
    slots.add(slot)
    return slot
  }

  /**
   * Frees a slot of the prefix holding the most, if it holds at least two more than `mine`: the
   * oldest silent one (no first frame yet), else the oldest. A provider mid-handshake inside a
   * flooded prefix is cut only once the flood's silent connections are gone.
   */
  private evictFromLargest(mine: number): boolean {
    let largest: Set<Slot> | undefined
    for (const slots of this.perPrefix.values()) if (largest === undefined || slots.size > largest.size) largest = slots
    if (largest === undefined || largest.size <= mine + 1) return false
    let victim = largest.values().next().value as Slot
    for (const slot of largest) {
      if (!slot.active) {
        victim = slot
        break
      }
    }
    victim.release()
    victim.evict()
    return true
  }
}
