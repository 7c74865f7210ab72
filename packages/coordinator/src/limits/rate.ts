import { parseDuration } from '../cli/duration.js'

/**
 * A token bucket's rule: it holds at most `burst` tokens and refills `burst` tokens per
 * `periodMs`, continuously. `10/1h` lets ten through at once, then one every six minutes.
 */
export interface Rate {
  burst: number
  periodMs: number
}

/** Longest refill period a setting may name: a bucket untouched for this long is full, so its row can go. */
export const MAX_RATE_PERIOD_MS = 86_400_000

export function perMs(rate: Rate): number {
  return rate.burst / rate.periodMs
}

/** The level a bucket at `level` when last touched at `since` has reached at `now` (never above its cap). */
export function refilled(level: number, since: number, now: number, cap: number, ratePerMs: number): number {
  return Math.min(cap, level + Math.max(0, now - since) * ratePerMs)
}

/**
 * A rate setting: `off`, or `<count>/<period>` with a period such as `h`, `1h`, `10m`, `30s` or
 * `1d`. Returns null for `off`, a Rate, or an error message naming the setting.
 */
export function parseRate(raw: string, name: string): Rate | null | string {
  const text = raw.trim().toLowerCase()
  if (text === 'off') return null
  const m = /^(\d{1,7})\/(\d*)([a-z]+)$/.exec(text)
  const count = m === null ? NaN : Number(m[1])
  const periodMs = m === null ? null : parseDuration(`${m[2] === '' ? '1' : m[2]}${m[3]}`)
  if (m === null || periodMs === null || count < 1 || count > 1_000_000 || periodMs < 1000 || periodMs > MAX_RATE_PERIOD_MS) {
    return `${name} must be off or <count>/<period>, e.g. 10/h or 30/10m: a count from 1 to 1000000 and a period from 1s to 1d`
  }
  return { burst: count, periodMs }
}

export function formatRate(rate: Rate | null): string {
  if (rate === null) return 'off'
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1000, 's'],
  ]
  for (const [ms, unit] of units) if (rate.periodMs % ms === 0) return `${rate.burst}/${rate.periodMs === ms ? '' : rate.periodMs / ms}${unit}`
  return `${rate.burst}/${rate.periodMs}ms`
}
