import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import t, { type Test } from 'tap'
import { openDatabase, type Database } from '../../src/db/database.js'
import { migrate } from '../../src/db/migrate.js'
import { ensurePgliteSeed } from '../../src/db/pglite-seed.js'
import { TokenStore } from '../../src/tokens/token-store.js'
import { captureLogs } from '../helpers/logs.js'

/*
 * The embedded default's first start (specs/operations, README "Embedded database"): the seed the
 * build made is written to disk instead of running initdb, and what comes out is an ordinary
 * database that later starts open as it is.
 */

function dataDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'poolcoord-embedded-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const sharedBuffers = async (db: Database) => (await sql<{ shared_buffers: string }>`show shared_buffers`.execute(db.kysely)).rows[0]?.shared_buffers

t.test('a first start writes the seed; the database is migrated, and a restart opens it as it is', async (t) => {
  const { file } = await ensurePgliteSeed()
  const dir = dataDir(t)
  // What a first start that crashed part-way leaves: some of the files, no PG_VERSION; and what an
  // empty volume mounted there holds.
  mkdirSync(join(dir, 'pglite', 'base', '1'), { recursive: true })
  writeFileSync(join(dir, 'pglite', 'base', '1', '1259'), 'half')
  writeFileSync(join(dir, 'pglite', 'postgresql.conf'), 'half')
  mkdirSync(join(dir, 'pglite', 'lost+found'))

  const first = captureLogs()
  let db = await openDatabase({ url: null, dataDir: dir, log: first.logger, seedFile: file })
  t.match(first.events('db.created'), [{ from: 'seed' }], 'created from the seed')
  t.same(first.events('db.creating'), [], 'no initdb')
  const m = await migrate(db)
  t.same(m.applied, [], 'every migration was in the seed')
  t.ok(m.alreadyApplied.length > 0)
  t.equal(await sharedBuffers(db), '16MB')
  const issued = await new TokenStore(db).issue('seeded-1', 'host', 'operator_issued')
  await db.close()
  t.ok(existsSync(join(dir, 'pglite', 'lost+found')), "what is not the seed's is left alone")

  const second = captureLogs()
  db = await openDatabase({ url: null, dataDir: dir, log: second.logger, seedFile: file })
  t.teardown(() => db.close())
  t.same([...second.events('db.created'), ...second.events('db.creating')], [], 'an existing database opens as it is')
  t.same((await migrate(db)).applied, [])
  const rows = await new TokenStore(db).list({ activeOnly: true })
  t.same(
    rows.map((r) => [r.providerId, r.tokenPrefix]),
    [['seeded-1', issued.tokenPrefix]],
    'the token written after the first start is there',
  )
})

t.test('the data directory may be a symbolic link to another disk', async (t) => {
  const { file } = await ensurePgliteSeed()
  const dir = dataDir(t)
  const elsewhere = dataDir(t)
  symlinkSync(elsewhere, join(dir, 'pglite'))
  const logs = captureLogs()
  const db = await openDatabase({ url: null, dataDir: dir, log: logs.logger, seedFile: file })
  t.teardown(() => db.close())
  t.match(logs.events('db.created'), [{ from: 'seed' }])
  t.ok(existsSync(join(elsewhere, 'PG_VERSION')), 'written through the link')
  t.ok(lstatSync(join(dir, 'pglite')).isSymbolicLink(), 'the link is still a link')
  t.same((await migrate(db)).applied, [])
})

t.test('a damaged seed is not used: initdb runs instead, and the log says why', async (t) => {
  const { file } = await ensurePgliteSeed()
  const dir = dataDir(t)
  const damaged = join(dir, 'damaged.tar.gz')
  const gz = readFileSync(file)
  writeFileSync(damaged, gz.subarray(0, gz.length >> 1))
  const logs = captureLogs()
  const db = await openDatabase({ url: null, dataDir: dir, log: logs.logger, seedFile: damaged })
  t.teardown(() => db.close())
  t.match(logs.events('db.seed_failed'), [{ seed: damaged, msg: /is damaged: rebuild it with npm run build/ }])
  t.match(logs.events('db.creating'), [{ from: 'initdb' }])
  t.same(logs.events('db.created'), [])
  t.ok((await migrate(db)).applied.length > 0, 'a new, empty database, migrated now')
  t.equal(await sharedBuffers(db), '16MB', 'the same settings without a seed')
  t.match(await new TokenStore(db).issue('fresh-1', 'host', 'operator_issued'), { providerId: 'fresh-1' })
})
