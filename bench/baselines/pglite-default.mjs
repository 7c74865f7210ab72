// Baseline: PGlite as it comes, in a process of its own: PGlite.create(<dir>) with its default
// settings (on an empty directory that runs initdb in this process), one query, then idle.
// This is what the embedded coordinator did at start before the seed. Usage: pglite-default.mjs <dir>
import { PGlite } from '@electric-sql/pglite'

const db = await PGlite.create(process.argv[2])
await db.query('select 1')
process.send?.({ type: 'ready' })
process.on('disconnect', async () => {
  await db.close()
  process.exit(0)
})
