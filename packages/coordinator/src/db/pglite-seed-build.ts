import { ensurePgliteSeed } from './pglite-seed.js'

/*
 * Run by `npm run build` after tsc: builds the embedded database's seed (db/pglite-seed.ts) in
 * this process of its own, so that no coordinator pays initdb's seconds and memory. A no-op when
 * the seed for this PGlite version and these migrations is already there.
 */
const started = performance.now()
const { file, built } = await ensurePgliteSeed()
console.log(`${built ? 'built' : 'up to date:'} ${file}${built ? ` in ${Math.round(performance.now() - started)} ms` : ''}`)
