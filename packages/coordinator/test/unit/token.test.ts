import t from 'tap'
import { TOKEN_PREFIX_LENGTH as PREFIX_LENGTH, TOKEN_RE, hashToken, tokenPrefix } from '@poolcoord/protocol'
import { generateToken, parseBearer, type BearerParse } from '../../src/tokens/token.js'

const HEX = '0123456789abcdef'.repeat(4) // 64 lowercase hex chars

t.test('parseBearer', async (t) => {
  const malformed: BearerParse = { kind: 'malformed' }
  const cases: { name: string; header: string | string[] | undefined; expected: BearerParse }[] = [
    { name: 'absent', header: undefined, expected: { kind: 'absent' } },
    { name: 'valid', header: `Bearer ${HEX}`, expected: { kind: 'token', token: HEX } },
    { name: 'surrounding white space is trimmed', header: `  Bearer ${HEX}  `, expected: { kind: 'token', token: HEX } },
    { name: 'present but empty', header: '', expected: malformed },
    { name: 'uppercase hex', header: `Bearer ${HEX.toUpperCase()}`, expected: malformed },
    { name: 'one uppercase hex char', header: `Bearer ${HEX.slice(0, 63)}F`, expected: malformed },
    { name: 'non-hex char', header: `Bearer ${HEX.slice(0, 63)}g`, expected: malformed },
    { name: 'wrong scheme Basic', header: `Basic ${HEX}`, expected: malformed },
    { name: 'wrong scheme Token', header: `Token ${HEX}`, expected: malformed },
    { name: 'no scheme', header: HEX, expected: malformed },
    { name: 'scheme only', header: 'Bearer', expected: malformed },
    { name: 'scheme and space only', header: 'Bearer ', expected: malformed },
    { name: 'extra part', header: `Bearer ${HEX} extra`, expected: malformed },
    { name: 'two tokens', header: `Bearer ${HEX} ${HEX}`, expected: malformed },
    { name: 'double space', header: `Bearer  ${HEX}`, expected: malformed },
    { name: 'tab separator', header: `Bearer\t${HEX}`, expected: malformed },
    { name: '63 hex chars', header: `Bearer ${HEX.slice(1)}`, expected: malformed },
    { name: '65 hex chars', header: `Bearer ${HEX}a`, expected: malformed },
    { name: 'array header', header: [`Bearer ${HEX}`], expected: malformed },
    { name: 'empty array header', header: [], expected: malformed },
    { name: 'over-long (257 chars, valid once trimmed)', header: `Bearer ${HEX}${' '.repeat(257 - 71)}`, expected: malformed },
    { name: 'over-long garbage', header: 'x'.repeat(10_000), expected: malformed },
  ]
  for (const c of cases) t.strictSame(parseBearer(c.header), c.expected, c.name)
  t.equal(`Bearer ${HEX}${' '.repeat(257 - 71)}`.length, 257, 'the over-long case is exactly one char over 256')
  t.strictSame(parseBearer(`Bearer ${HEX}${' '.repeat(256 - 71)}`), { kind: 'token', token: HEX }, '256 chars is still accepted')
})

t.test('hashToken is SHA-256 as lowercase hex', async (t) => {
  const vectors: { input: string; hash: string }[] = [
    { input: 'abc', hash: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' },
    { input: '', hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
  ]
  for (const v of vectors) t.equal(hashToken(v.input), v.hash, `sha256(${JSON.stringify(v.input)})`)
  const h = hashToken(HEX)
  t.match(h, TOKEN_RE)
  t.not(h, HEX, 'the hash is not the token')
  t.equal(hashToken(HEX), h, 'deterministic')
  t.not(hashToken(HEX.slice(0, 63) + 'e'), h, 'one char changes the hash')
})

t.test('generateToken format and uniqueness', async (t) => {
  const seen = new Set<string>()
  let wellFormed = 0
  for (let i = 0; i < 1000; i++) {
    const tok = generateToken()
    if (TOKEN_RE.test(tok)) wellFormed++
    seen.add(tok)
  }
  t.equal(wellFormed, 1000, 'every token is 64 lowercase hex chars')
  t.equal(seen.size, 1000, 'no repeats across 1000 draws')
  const tok = generateToken()
  t.strictSame(parseBearer(`Bearer ${tok}`), { kind: 'token', token: tok }, 'a generated token round-trips through parseBearer')
})

t.test('tokenPrefix', async (t) => {
  t.equal(PREFIX_LENGTH, 12)
  const tok = generateToken()
  const prefix = tokenPrefix(tok)
  t.equal(prefix.length, 12)
  t.equal(prefix, tok.slice(0, 12))
  t.ok(tok.startsWith(prefix))
  t.equal(tokenPrefix(HEX), '0123456789ab')
})
