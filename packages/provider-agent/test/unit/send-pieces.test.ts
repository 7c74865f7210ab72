// Chunk pieces: bounded, in order, never splitting a surrogate pair, and waiting for the socket.
import t from 'tap'
import { MAX_PIECE, lastPieceStart, pieceEnd, sendRange } from '../../src/send-pieces.js'

const EMOJI = '\u{1F600}' // two UTF-16 units: a high and a low surrogate
/** No lone surrogate: half a pair cut off from its other half. */
const wellFormed = (s: string): boolean => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)

function cut(text: string, max: number): string[] {
  const pieces: string[] = []
  const wait = sendRange(text, 0, text.length, (d) => void pieces.push(d), max)
  if (wait !== undefined) throw new Error('a send that never waits made a promise')
  return pieces
}

t.test('pieces are at most max characters, in order, and a short text is sent as it is', async (t) => {
  const text = 'abcdefghij'
  t.same(cut(text, 4), ['abcd', 'efgh', 'ij'])
  t.same(cut(text, 10), [text])
  t.same(cut('', 4), [], 'nothing to send: no empty piece')
  const whole: string[] = []
  sendRange(text, 0, text.length, (d) => void whole.push(d))
  t.equal(whole[0], text, 'the default bound is MAX_PIECE')
  t.equal(MAX_PIECE, 128 * 1024)
})

t.test('a surrogate pair is never cut in two', async (t) => {
  // The pair sits across the boundary of a 4-character piece.
  const text = `abc${EMOJI}def${EMOJI}${EMOJI}x`
  const pieces = cut(text, 4)
  t.equal(pieces.join(''), text)
  for (const p of pieces) {
    t.ok(p.length <= 4, `"${p}" within the bound`)
    t.ok(wellFormed(p), `"${p}" holds no lone surrogate`)
  }
  t.equal(pieceEnd(text, 0, 4), 3, 'the piece ends before the high surrogate')
})

t.test('lastPieceStart names the start of the piece sendRange would send last', async (t) => {
  for (const text of ['', 'ab', 'abcd', 'abcde', `abc${EMOJI}defgh`, 'x'.repeat(17)]) {
    const pieces = cut(text, 4)
    const expected = pieces.length === 0 ? 0 : text.length - pieces[pieces.length - 1]!.length
    t.equal(lastPieceStart(text, 4), expected, JSON.stringify(text))
  }
})

t.test('a backed-up socket: the next piece waits until the last was taken', async (t) => {
  const text = 'aaaabbbbcc'
  const sent: string[] = []
  let release: () => void = () => {}
  const wait = sendRange(
    text,
    0,
    text.length,
    (d) => {
      sent.push(d)
      // Only the first piece finds the socket backed up.
      return sent.length === 1 ? new Promise<void>((r) => (release = r)) : undefined
    },
    4,
  )
  t.ok(wait instanceof Promise, 'the caller learns it must wait')
  await Promise.resolve()
  t.same(sent, ['aaaa'], 'nothing more while the socket is backed up')
  release()
  await wait
  t.same(sent, ['aaaa', 'bbbb', 'cc'], 'the rest, in order, once it drained')
})

t.test('a range: the pieces before the last one, for an answer whose last piece goes in the end frame', async (t) => {
  const text = 'aaaabbbbcc'
  const sent: string[] = []
  const last = lastPieceStart(text, 4)
  sendRange(text, 0, last, (d) => void sent.push(d), 4)
  t.same(sent, ['aaaa', 'bbbb'])
  t.equal(text.slice(last), 'cc')
})
