import t from 'tap'
import { LEASE_NODE_ID_RE, MAX_LEASE_BYTES, encodeLease, leaseKey, parseLease, providerIdOfKey, type SessionLease } from '../../src/cluster/lease-value.js'
import { NODE_ID_PATTERN } from '../../src/config.js'
import { InvalidProviderIdError } from '../../src/errors.js'

const ACTIVE: SessionLease = {
  v: 1,
  node_id: 'node-a',
  incarnation: 'b3c1e0f4-58a4-4c8e-9b1e-0f4b3c1e58a4',
  assigned_id: 'asg-1',
  auth_state: 'bearer_validated',
  status: 'ready',
  state: 'active',
}
const HANDOVER: SessionLease = { ...ACTIVE, state: 'handover', prev: { node_id: 'node-b', incarnation: 'inc-b', assigned_id: 'asg-0' } }
const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v))

t.test('lease keys: hex of the id, valid for ids that are not subject tokens, and back', async (t) => {
  t.equal(leaseKey('mac-1'), 's.6d61632d31')
  for (const id of ['a..b', '.x', '-', 'x.', '_', 'A_z-9.0', 'p'.repeat(64)]) {
    const key = leaseKey(id)
    t.match(key, /^s\.[0-9a-f]+$/, `${id}: only hex after the prefix`)
    t.equal(providerIdOfKey(key), id, `${id}: round trip`)
  }
  for (const bad of ['', '.', '..', 'a b', 'é', 'p'.repeat(65), 'a/b']) t.throws(() => leaseKey(bad), InvalidProviderIdError, `refused: ${JSON.stringify(bad)}`)
})

t.test('providerIdOfKey: only keys this version writes', async (t) => {
  for (const key of ['n.node-a', 's.', 's.6D', 's.6d6', 's.zz', 'x.6d61', 's.2e2e' /* '..' */, `s.${'61'.repeat(65)}`, 's.c3a9' /* é */]) {
    t.equal(providerIdOfKey(key), null, key)
  }
})

t.test('encode and parse round trip, for both states', async (t) => {
  t.strictSame(parseLease(encodeLease(ACTIVE)), ACTIVE)
  t.strictSame(parseLease(encodeLease(HANDOVER)), HANDOVER)
  t.ok(encodeLease(HANDOVER).length < 400, 'a lease is small')
})

t.test('parseLease rejects what it cannot vouch for', async (t) => {
  const cases: Array<[string, Uint8Array]> = [
    ['not JSON', bytes('{')],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0x7d])],
    ['null', bytes('null')],
    ['an array', bytes([ACTIVE])],
    ['a number', bytes('1')],
    ['no version', bytes({ ...ACTIVE, v: undefined })],
    ['another version', bytes({ ...ACTIVE, v: 2 })],
    ['unknown auth_state', bytes({ ...ACTIVE, auth_state: 'root' })],
    ['unknown status', bytes({ ...ACTIVE, status: 'sleeping' })],
    ['unknown state', bytes({ ...ACTIVE, state: 'limbo' })],
    ['handover without prev', bytes({ ...ACTIVE, state: 'handover' })],
    ['active with a prev', bytes({ ...HANDOVER, state: 'active' })],
    ['a prev missing its assigned_id', bytes({ ...HANDOVER, prev: { node_id: 'node-b', incarnation: 'inc-b' } })],
    ['a prev that is a string', bytes({ ...HANDOVER, prev: 'node-b' })],
    ['node id with upper case', bytes({ ...ACTIVE, node_id: 'Node-A' })],
    ['node id with a dot', bytes({ ...ACTIVE, node_id: 'node.a' })],
    ['missing incarnation', bytes({ ...ACTIVE, incarnation: undefined })],
    ['assigned_id too long', bytes({ ...ACTIVE, assigned_id: 'a'.repeat(65) })],
    ['assigned_id not a string', bytes({ ...ACTIVE, assigned_id: 7 })],
    ['over the size bound', bytes({ ...ACTIVE, pad: 'x'.repeat(MAX_LEASE_BYTES) })],
  ]
  for (const [name, b] of cases) t.equal(parseLease(b), null, name)
})

t.test('unknown extra fields are dropped, never passed on', async (t) => {
  t.strictSame(parseLease(bytes({ ...ACTIVE, admin: true })), ACTIVE)
})

t.test('encodeLease refuses to write a value it would not read back', async (t) => {
  t.throws(() => encodeLease({ ...ACTIVE, node_id: 'Bad.Node' }), /invalid session lease/)
  t.throws(() => encodeLease({ ...ACTIVE, state: 'handover' }), /invalid session lease/)
})

t.test('the node id rule is the one config.ts enforces', async (t) => {
  t.equal(LEASE_NODE_ID_RE.source, NODE_ID_PATTERN.source)
  t.equal(LEASE_NODE_ID_RE.flags, NODE_ID_PATTERN.flags)
})
