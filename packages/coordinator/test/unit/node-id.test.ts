import { lstatSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { NODE_ID_FILE, generateNodeId, newIncarnation, resolveNodeId } from '../../src/cluster/node-id.js'
import { NODE_ID_PATTERN } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'
import { captureLogs } from '../helpers/logs.js'

t.test('generated once (mode 0600, no temporary file left), then kept', async (t) => {
  const dir = path.join(t.testdir({}), 'nested')
  const logs = captureLogs()
  const id = resolveNodeId(null, dir, logs.logger)
  t.match(id, NODE_ID_PATTERN)
  const file = path.join(dir, NODE_ID_FILE)
  t.equal(lstatSync(file).mode & 0o777, 0o600)
  t.equal(readFileSync(file, 'utf8'), `${id}\n`)
  t.strictSame(readdirSync(dir), [NODE_ID_FILE], 'the temporary file is gone')
  t.equal(logs.events('node_id.generated').length, 1)
  t.equal(resolveNodeId(null, dir, logs.logger), id, 'the next start reads it back')
  t.equal(logs.events('node_id.generated').length, 1, 'and generates nothing')
})

t.test('COORD_NODE_ID wins and is never written', async (t) => {
  const dir = t.testdir({})
  t.equal(resolveNodeId('coord-a', dir, captureLogs().logger), 'coord-a')
  t.strictSame(readdirSync(dir), [])
})

t.test('a node-id file that is not a node id, or a link, is refused with the remedy', async (t) => {
  const log = captureLogs().logger
  for (const content of ['Upper-Case\n', 'has.dot\n', '\n', '-leading-dash\n', `${'a'.repeat(64)}\n`]) {
    const dir = t.testdir({ [NODE_ID_FILE]: content })
    const err = t.throws(() => resolveNodeId(null, dir, log), ConfigError, JSON.stringify(content))
    t.match(err, { message: /delete it to generate a new id, or set COORD_NODE_ID/ })
  }
  const dir = t.testdir({ real: 'node-a\n' })
  symlinkSync(path.join(dir, 'real'), path.join(dir, NODE_ID_FILE))
  t.throws(() => resolveNodeId(null, dir, log), /must be a regular file/)
  const ok = t.testdir({})
  writeFileSync(path.join(ok, NODE_ID_FILE), '  node-b  \n')
  t.equal(resolveNodeId(null, ok, log), 'node-b', 'surrounding white space is ignored')
})

t.test('generated ids are subject-safe and keep the host name readable', async (t) => {
  const cases: Array<[string, string]> = [
    ['coord-1', 'coord-1-0a1b2c3d'],
    ['Coord-1.example.com', 'coord-1-example-com-0a1b2c3d'],
    ['___', 'node-0a1b2c3d'],
    ['', 'node-0a1b2c3d'],
    ['-x-', 'x-0a1b2c3d'],
    ['h'.repeat(100), `${'h'.repeat(40)}-0a1b2c3d`],
    ['a'.repeat(39) + '.b', `${'a'.repeat(39)}-0a1b2c3d`],
  ]
  for (const [host, id] of cases) {
    t.equal(generateNodeId(host, '0a1b2c3d'), id, JSON.stringify(host))
    t.match(id, NODE_ID_PATTERN)
  }
})

t.test('an incarnation is a fresh UUID each time', async (t) => {
  const a = newIncarnation()
  t.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  t.not(newIncarnation(), a)
})
