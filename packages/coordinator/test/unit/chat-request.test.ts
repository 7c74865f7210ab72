import t from 'tap'
import { parseChatRequest, parsePin } from '../../src/http/chat-request.js'

const messages = [{ role: 'user', content: 'hi' }]

t.test('a valid request is passed through verbatim', async (t) => {
  const raw = JSON.stringify({ model: 'm', messages, temperature: 0.2, tools: [], unknown_field: { x: 1 } })
  t.same(parseChatRequest(raw), { model: 'm', stream: false, body: raw })
  t.equal(parseChatRequest(JSON.stringify({ model: 'm', messages, stream: true })).stream, true)
  t.equal(parseChatRequest(JSON.stringify({ model: 'm', messages, stream: null })).stream, false)
})

t.test('rejections carry stable codes and never echo input', async (t) => {
  const cases: Array<[string, string]> = [
    ['', 'invalid_json'],
    ['{', 'invalid_json'],
    ['null', 'invalid_json'],
    ['"str"', 'invalid_json'],
    ['[1]', 'invalid_json'],
    [JSON.stringify({ messages }), 'invalid_request'],
    [JSON.stringify({ model: 42, messages }), 'invalid_request'],
    [JSON.stringify({ model: 'x'.repeat(257), messages }), 'invalid_request'],
    [JSON.stringify({ model: 'evil\nmodel', messages }), 'invalid_request'],
    [JSON.stringify({ model: 'm' }), 'invalid_request'],
    [JSON.stringify({ model: 'm', messages: 'hi' }), 'invalid_request'],
    [JSON.stringify({ model: 'm', messages: [] }), 'invalid_request'],
    [JSON.stringify({ model: 'm', messages, stream: 1 }), 'invalid_request'],
  ]
  for (const [raw, code] of cases) {
    t.throws(() => parseChatRequest(raw), { code }, raw.slice(0, 40))
  }
  t.throws(() => parseChatRequest(JSON.stringify({ model: 'evil\nmodel', messages })), { message: /^[^\n]*$/ })
})

t.test('X-Pool-Provider', async (t) => {
  t.equal(parsePin(undefined), null)
  t.equal(parsePin('mac-1.local_2'), 'mac-1.local_2')
  for (const bad of ['', 'a b', 'a,b', 'x'.repeat(65), 'ä', ['a', 'b']]) {
    t.throws(() => parsePin(bad), { code: 'invalid_request' }, JSON.stringify(bad))
  }
})
