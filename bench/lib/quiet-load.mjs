import { httpLoad } from './load.mjs'

/** Foreign load above this (% of one core) makes a window suspect: it is run again. */
export const FOREIGN_LOAD_LIMIT_PCT = 15

/**
 * One load pass; if someone else's processes took more than FOREIGN_LOAD_LIMIT_PCT of a core
 * during it, up to two more, keeping the quietest. The box is shared: this keeps other
 * sessions' test runs out of the ratios as far as it can, and says so when it cannot.
 */
export async function quietLoad(env, opts) {
  // --quick figures mean nothing anyway: no retries there, so that CI stays fast.
  const tries = env.quick ? 1 : 3
  let best = null
  for (let attempt = 1; attempt <= tries; attempt++) {
    const r = await httpLoad(opts)
    if (best === null || r.otherPct < best.otherPct) best = { ...r, attempts: attempt }
    if (r.otherPct <= FOREIGN_LOAD_LIMIT_PCT || attempt === tries) break
    env.log(`${opts.label ?? 'load'}: foreign load ${r.otherPct.toFixed(0)}% of a core during the window; again`)
  }
  return best
}
