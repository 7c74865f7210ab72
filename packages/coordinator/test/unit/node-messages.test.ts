import t from 'tap'
import { encode, inferenceRequest } from '@poolcoord/protocol'
import {
  encodeCancel,
  encodeDispatch,
  encodeEvent,
  parseCancel,
  parseDispatch,
  encodeEvents,
  parseEvents,
  refusalOf,
  type DispatchMeta,
} from '../../src/cluster/node-messages.js'

const meta: DispatchMeta = {
  attempt: '0123456789abcdef0123456789abcdef',
  request_id: 'req-1',
  provider_id: 'a..b',
  assigned_id: 'as-1',
  origin: 'n1',
  origin_incarnation: 'inc-1',
}
const frame = encode(inferenceRequest('req-1', true, JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'é\n"\\' }] })))
const enc = new TextEncoder()

t.test('dispatch: metadata and the frame, byte-exact; anything else is invalid', async (t) => {
  const parsed = parseDispatch(encodeDispatch(meta, frame), 1 << 20)
  t.same(parsed, { ok: true, meta, frame })
  const bad: Array<[string, Uint8Array]> = [
    ['no newline', enc.encode(JSON.stringify(meta))],
    ['a frame over the bound', encodeDispatch(meta, frame)],
    ['an attempt id that is not 32 hex digits', encodeDispatch({ ...meta, attempt: 'x.y' }, frame)],
    ['an origin with a dot', encodeDispatch({ ...meta, origin: 'n.1' }, frame)],
    ['a frame of another request', encodeDispatch({ ...meta, request_id: 'req-2' }, frame)],
    ['a frame that is not an inference_request', encodeDispatch(meta, '{"type":"drain"}')],
    ['metadata that is not JSON', enc.encode(`{x\n${frame}`)],
  ]
  for (const [name, bytes] of bad) t.same(parseDispatch(bytes, name === 'a frame over the bound' ? 10 : 1 << 20), { ok: false }, name)
})

t.test('replies, events and cancels round-trip; malformed ones are null', async (t) => {
  t.same(parseEvents(encodeEvent('a', 0)), [{ kind: 'a', seq: 0, payload: '' }], "the owner's acceptance")
  t.same(parseEvents(encodeEvent('r', 0, 'ineligible')), [{ kind: 'r', seq: 0, payload: 'ineligible' }], 'and its refusal')
  t.equal(refusalOf('ineligible'), 'ineligible')
  t.equal(refusalOf('other'), null)
  t.same(parseEvents(encodeEvent('c', 41, 'data: x\n\n')), [{ kind: 'c', seq: 41, payload: 'data: x\n\n' }])
  t.same(parseEvents(encodeEvent('k', 0)), [{ kind: 'k', seq: 0, payload: '' }])
  const burst = [
    { kind: 'c' as const, seq: 3, payload: 'é\n中😀' },
    { kind: 'c' as const, seq: 4, payload: '' },
    { kind: 'e' as const, seq: 5, payload: '{"type":"inference_response_end"}' },
  ]
  t.same(parseEvents(encodeEvents(burst)), burst, 'several events in one message, multi-byte payloads and all')
  for (const bad of ['c\nx', 'z1,0\n', 'c-1,0\n', `c${'9'.repeat(20)},0\n`, 'c1,0', 'c1,5\nabc', 'c1,0\nc2\n', '']) {
    t.equal(parseEvents(enc.encode(bad)), null, JSON.stringify(bad))
  }
  t.same(parseCancel(encodeCancel({ attempt: meta.attempt, reason: 'buyer_too_slow' })), { attempt: meta.attempt, reason: 'buyer_too_slow' })
  for (const bad of [`${meta.attempt} nope`, `${meta.attempt} timeout extra`, 'short timeout']) t.equal(parseCancel(enc.encode(bad)), null, bad)
})
