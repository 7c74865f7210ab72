import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ConfigError } from '../../src/errors.js'
import { OPERATOR_KEY_FILE, resolveOperatorKey } from '../../src/operator-key.js'
import { captureLogs } from '../helpers/logs.js'

t.test('generates a key once, mode 0600, and says where without saying what', async (t) => {
  const dir = t.testdir({})
  const logs = captureLogs()
  const key = resolveOperatorKey(null, path.join(dir, 'nested'), logs.logger)
  const file = path.join(dir, 'nested', OPERATOR_KEY_FILE)
  t.match(key, /^[0-9a-f]{64}$/)
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.equal(readFileSync(file, 'utf8').trim(), key)
  t.equal(logs.events('operator_key.generated').length, 1)
  t.match(logs.text(), file, 'the log names the file')
  t.notMatch(logs.text(), key, 'the log never carries the key')
  t.equal(resolveOperatorKey(null, path.join(dir, 'nested'), logs.logger), key, 'the next start reuses it')
  t.equal(logs.events('operator_key.generated').length, 1, 'and says nothing new')
})

t.test('a configured key wins; a bad key file is refused', async (t) => {
  const dir = t.testdir({ [OPERATOR_KEY_FILE]: 'short\n' })
  const log = captureLogs().logger
  t.equal(resolveOperatorKey('configured-key-0123456789', dir, log), 'configured-key-0123456789')
  chmodSync(path.join(dir, OPERATOR_KEY_FILE), 0o600)
  t.throws(() => resolveOperatorKey(null, dir, log), ConfigError, 'a key file with a too-short key')
  writeFileSync(path.join(dir, OPERATOR_KEY_FILE), '\n', { mode: 0o600 })
  t.throws(() => resolveOperatorKey(null, dir, log), ConfigError, 'an empty key file is never accepted')
  writeFileSync(path.join(dir, OPERATOR_KEY_FILE), 'a'.repeat(40))
  chmodSync(path.join(dir, OPERATOR_KEY_FILE), 0o644)
  t.throws(() => resolveOperatorKey(null, dir, log), /chmod 600/, 'a key file others can read')
})
