const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** `90m`, `24h`, `7d`, `2w`, `3600s` → milliseconds; null for anything else. Pure. */
export function parseDuration(raw: string): number | null {
  const m = /^(\d{1,9})(s|m|h|d|w)$/.exec(raw.trim())
  if (m === null) return null
  return Number(m[1]) * (UNITS[m[2] as string] as number)
}
