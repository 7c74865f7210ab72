/** p50/p99/max of a list of milliseconds. */
export function summarize(values) {
  const sorted = Float64Array.from(values).sort()
  const at = (p) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))])
  return { n: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted.length ? sorted[sorted.length - 1] : null }
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b)
  if (s.length === 0) return null
  const mid = Math.floor(s.length / 2)
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms))
}
