import type { StrikeReason } from '@poolcoord/protocol'

export type { StrikeReason }

export interface Strikes {
  strikes: number
  lastReason: StrikeReason
}

export interface StrikeBookLimits {
  /** A strike counts for this long after it was charged. */
  windowMs: number
  /** provider_ids remembered; past it the one struck longest ago is forgotten. */
  maxEntries: number
  /** Strikes remembered per provider_id within the window; more are counted as this many. */
  maxPerId: number
}

export const defaultStrikeLimits: StrikeBookLimits = { windowMs: 3_600_000, maxEntries: 10_000, maxPerId: 64 }

interface Entry {
  /** When each strike still in the window was charged, oldest first. */
  at: number[]
  lastReason: StrikeReason
}

/**
 * Strikes per provider_id: protocol misbehaviour that outlives the connection, so that a provider
 * closed for abusive frames reconnects with its record. Each strike expires windowMs after it was
 * charged. Memory is bounded twice: maxEntries ids (a flood of new ids costs the oldest records,
 * not the process) and maxPerId strikes each.
 */
export class StrikeBook {
  /** In order of the last charge: the first entry is the one struck longest ago. */
  private readonly entries = new Map<string, Entry>()

  constructor(private readonly limits: StrikeBookLimits = defaultStrikeLimits) {}

  get size(): number {
    return this.entries.size
  }

  /** Adds a strike; returns the id's strikes within the window, this one included. */
  charge(providerId: string, reason: StrikeReason, now: number): number {
    const e = this.live(providerId, now) ?? { at: [], lastReason: reason }
    e.at.push(now)
    if (e.at.length > this.limits.maxPerId) e.at.shift()
    e.lastReason = reason
    // Delete and set again: the entry moves to the end, where the newest charges are.
    this.entries.delete(providerId)
    this.entries.set(providerId, e)
    if (this.entries.size > this.limits.maxEntries) this.entries.delete(this.entries.keys().next().value as string)
    return e.at.length
  }

  get(providerId: string, now: number): Strikes | null {
    const e = this.live(providerId, now)
    return e === null ? null : { strikes: e.at.length, lastReason: e.lastReason }
  }

  /** The id's entry without its expired strikes; null, and forgotten, once none is left. */
  private live(providerId: string, now: number): Entry | null {
    const e = this.entries.get(providerId)
    if (e === undefined) return null
    const from = now - this.limits.windowMs
    let expired = 0
    while (expired < e.at.length && (e.at[expired] as number) <= from) expired++
    if (expired > 0) e.at.splice(0, expired)
    if (e.at.length > 0) return e
    this.entries.delete(providerId)
    return null
  }
}
