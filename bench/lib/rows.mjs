/**
 * A results row: one figure of the coordinator against its same-run baseline. `better` says
 * which way is good, so that the ratio can be read against the goal without a sign convention.
 */
export function row({ scenario, measure, unit, value, baseline = null, better = 'higher', goal = null, note = '' }) {
  const ratio = baseline === null || value === null || baseline === 0 ? null : value / baseline
  let met = '—'
  if (goal !== null && ratio !== null) met = (goal.op === '>=' ? ratio >= goal.x : ratio <= goal.x) ? 'yes' : 'no'
  return { scenario, measure, unit, value, baseline, ratio, better, goal: goal === null ? null : `${goal.op} ${goal.x}×`, met, note }
}

/** A row with an absolute goal (a count, a yes/no) instead of a ratio. */
export function absoluteRow({ scenario, measure, unit, value, goal, met, note = '' }) {
  return { scenario, measure, unit, value, baseline: null, ratio: null, better: null, goal, met: met ? 'yes' : 'no', note }
}

/** A figure that is only reported. */
export function reportRow({ scenario, measure, unit, value, baseline = null, note = '' }) {
  return { ...row({ scenario, measure, unit, value, baseline }), goal: 'report', met: '—', note }
}

/**
 * A row whose goal is an allowance over the baseline (value ≤ baseline + margin) rather than a
 * ratio: for latencies, where a fixed cost such as one more hop matters and a ratio of two
 * sub-millisecond figures would exaggerate it. The ratio is still shown.
 */
export function marginRow({ scenario, measure, unit, value, baseline, margin, note = '' }) {
  const r = row({ scenario, measure, unit, value, baseline, better: 'lower' })
  const met = value === null || baseline === null ? '—' : value <= baseline + margin ? 'yes' : 'no'
  return { ...r, goal: `<= baseline + ${margin} ${unit}`, met, note }
}
