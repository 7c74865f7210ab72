/** Plain-text output for coordinator-cli: aligned columns, and counts that read as English. */
export function printTable(out: (s: string) => void, head: string[], rows: Array<Array<string | null>>): void {
  // Cells come from the store and from providers: no control character reaches the terminal.
  rows = rows.map((r) => r.map((c) => (c === null ? null : c.replace(/[\u0000-\u001f\u007f]/g, '?'))))
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  for (const r of [head, ...rows]) {
    out(
      r
        .map((c, i) => (c ?? '').padEnd(widths[i] as number))
        .join('  ')
        .trimEnd(),
    )
  }
}

/** `1 active token`, `2 active tokens`. */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}
