import { forkChild, nextMessage, stopChild } from '../lib/children.mjs'
import { reportRow } from '../lib/rows.mjs'

const SIZES = [10, 100, 1_000, 10_000]

/**
 * selectProvider in isolation at growing pool sizes, in its own process. Past 64 sessions a
 * selection weighs a random sample of 64 candidates (specs/buyer-api.md §3), so its cost should
 * stay flat from 100 up; the rows show whether it does, next to the per-request CPU the HTTP
 * scenario measured.
 */
export async function runRouting(env) {
  const child = forkChild(new URL('../load/select-worker.mjs', import.meta.url).pathname, [
    JSON.stringify({ sizes: SIZES, budgetMs: env.sizes.selectBudgetMs }),
  ])
  try {
    const { rows } = await nextMessage(child, 'result', 120_000)
    const at = (n) => rows.find((r) => r.size === n).usPerSelection
    const out = rows.map((r) =>
      reportRow({
        scenario: `routing: selectProvider, pool of ${r.size.toLocaleString('en-US')}`,
        measure: 'µs per selection',
        unit: 'µs',
        value: r.usPerSelection,
        baseline: r.size === 10 ? null : at(10),
        note: `ratio is to the pool of 10; over a plain array: ${r.usPerSelectionArray.toFixed(2)} µs`,
      }),
    )
    return { rows: out, details: { select: rows, growth1kTo10k: at(10_000) / at(1_000) } }
  } finally {
    await stopChild(child)
  }
}
