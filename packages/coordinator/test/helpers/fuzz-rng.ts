/**
 * The fuzzers' randomness (test/integration/fuzz.test.ts): one seeded generator, so that a run is
 * reproduced by its seed, and the hostile values both fuzzers draw from.
 */

/** sfc32, seeded through splitmix32: fast, 128 bits of state, the same sequence on every platform. */
export class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = next()
    this.b = next()
    this.c = next()
    this.d = next()
    for (let i = 0; i < 12; i++) this.u32()
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n)
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1)
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n)
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff
    return out
  }

  /** An independent generator for one lane of work, so lanes stay reproducible whatever order they run in. */
  fork(label: string): Rng {
    let h = this.u32()
    for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0
    return new Rng(h)
  }
}

/** The seed of a run: FUZZ_SEED (a number, or `random`), else a fixed one so that CI is deterministic. */
export function fuzzSeed(env: string | undefined, fixed: number): number {
  if (env === undefined || env === '') return fixed
  if (env === 'random') return Math.floor(Math.random() * 2 ** 32)
  const n = Number(env)
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new Error('FUZZ_SEED must be an integer from 0 to 2^32-1, or random')
  return n
}

/** A positive count from the environment, else the default. */
export function fuzzCount(env: string | undefined, fallback: number): number {
  if (env === undefined || env === '') return fallback
  const n = Number(env)
  if (!Number.isInteger(n) || n < 1) throw new Error('fuzz counts must be positive integers')
  return n
}

/** A JSON token written as is: numbers JSON.stringify cannot produce (1e999, 30 digits, -0). */
export class Raw {
  constructor(readonly text: string) {}
}

const RAW_MARK = '\u0000raw:'

/** JSON text from a value that may hold Raw tokens; keys in insertion order. */
export function jsonText(v: unknown): string {
  const raws: string[] = []
  // JSON.stringify does the work; each Raw goes in as a marked string and comes out as its text.
  const text = JSON.stringify(v, (_k, x: unknown) => (x instanceof Raw ? `${RAW_MARK}${raws.push(x.text) - 1}` : x)) ?? 'null'
  return raws.length === 0 ? text : text.replace(/"\\u0000raw:(\d+)"/g, (_m, i: string) => raws[Number(i)] as string)
}

/** Sets a field as an own property, `__proto__` included (plain assignment would set the prototype). */
export function setField(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true })
}

const ODD_TEXT = [
  '',
  ' ',
  '.',
  '..',
  '../../etc/passwd',
  'a b',
  'null',
  '__proto__',
  'constructor',
  '%00',
  '%2F',
  '<script>alert(1)</script>',
  "'; DROP TABLE provider_tokens; --",
  'line\nbreak',
  'tab\there',
  'nul\u0000byte',
  'bell\u0007',
  'del\u007f',
  'zero\u200bwidth',
  'rtl\u202eevil',
  'bom\ufeff',
  'sep\u2028',
  'lone\ud800surrogate',
  'low\udfffsurrogate',
  '🦙🦙🦙',
  'e\u0301\u0301\u0301',
  'Ω≈ç√∫',
  '日本語のモデル',
  'مرحبا',
  '\\',
  '"',
  '{"type":"hello"}',
]

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.5,
  1.5,
  2,
  7,
  8,
  9,
  63,
  64,
  65,
  255,
  256,
  257,
  1023,
  1024,
  1025,
  8192,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  1e6,
  1e6 + 1,
  100_000_000,
  100_000_001,
  1e21,
  1e300,
  -1e300,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  -(2 ** 31),
]

const RAW_NUMBERS = ['1e999', '-1e999', '123456789012345678901234567890', '1.0', '1e0', '-0', '0.0000001e-400', '1E+2', '2.0000000000000001', '0e0']

/** A string that tests bounds, encodings and injection. */
export function oddString(rng: Rng): string {
  switch (rng.int(6)) {
    case 0:
      return rng.pick(ODD_TEXT)
    case 1:
      return 'x'.repeat(rng.pick([1, 43, 63, 64, 65, 85, 86, 87, 252, 253, 254, 255, 256, 257, 1000, 5000]))
    case 2:
      return rng.pick(ODD_TEXT) + 'y'.repeat(rng.range(0, 300))
    case 3: {
      // Any code unit, surrogates and controls included.
      let s = ''
      for (let n = rng.range(1, 40); n > 0; n--) s += String.fromCharCode(rng.pick([rng.int(0x20), rng.int(0x80), rng.int(0x10000), 0xd800 + rng.int(0x800)]))
      return s
    }
    case 4:
      return String(rng.pick(NUMBERS))
    default:
      return rng.bytes(rng.range(1, 24)).toString('base64url')
  }
}

/** A number (or a Raw numeric token) at or near a bound, or out of range. */
export function oddNumber(rng: Rng, near: number[] = []): unknown {
  const r = rng.int(10)
  if (r < 3 && near.length > 0) return rng.pick(near) + rng.pick([-1, 0, 0, 1, 0.5])
  if (r < 5) return new Raw(rng.pick(RAW_NUMBERS))
  return rng.pick(NUMBERS)
}

/** `[[[…]]]` or `{"a":{"a":…}}` nested `depth` levels (the innermost value counts as one level). */
export function nested(depth: number, kind: 'array' | 'object'): Raw {
  return new Raw(kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1))
}

/** Any value of any type, occasionally a large or deep one. */
export function oddValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 2 ? 6 : 9)) {
    case 0:
      return null
    case 1:
      return rng.chance(0.5)
    case 2:
    case 3:
      return oddString(rng)
    case 4:
    case 5:
      return oddNumber(rng)
    case 6:
      return Array.from({ length: rng.range(0, 5) }, () => oddValue(rng, depth + 1))
    case 7:
      return Object.fromEntries(Array.from({ length: rng.range(0, 4) }, () => [oddString(rng).slice(0, 20), oddValue(rng, depth + 1)]))
    default:
      return rng.chance(0.5)
        ? nested(rng.pick([2, 8, 9, 64, 65, 200]), rng.chance(0.5) ? 'array' : 'object')
        : Array.from({ length: rng.pick([64, 65, 300, 1100]) }, (_, i) => i)
  }
}

/** Byte-level damage to serialised text: truncation, flips, insertions, framing junk. */
export function damage(rng: Rng, text: Buffer): { bytes: Buffer; op: string } {
  const b = Buffer.from(text)
  switch (rng.int(9)) {
    case 0:
      return { bytes: b.subarray(0, rng.int(b.length + 1)), op: 'truncate' }
    case 1: {
      for (let n = rng.range(1, 4); n > 0 && b.length > 0; n--) b[rng.int(b.length)] = rng.u32() & 0xff
      return { bytes: b, op: 'flip' }
    }
    case 2: {
      const at = rng.int(b.length + 1)
      return { bytes: Buffer.concat([b.subarray(0, at), rng.bytes(rng.range(1, 16)), b.subarray(at)]), op: 'insert' }
    }
    case 3: {
      const at = rng.int(b.length + 1)
      const junk = Buffer.from(rng.pick(['{', '}', '[', ']', '"', '\\', ',', ':', '\\u', '\\ud800', 'null', ',,', '"":""']))
      return { bytes: Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]), op: 'insert-token' }
    }
    case 4:
      return { bytes: Buffer.concat([Buffer.from(rng.pick(['\ufeff', ' \n\t', '[', '\u0000'])), b]), op: 'prefix' }
    case 5:
      return { bytes: Buffer.concat([b, Buffer.from(rng.pick([' ', '\n', 'x', ',', '}', '{}', '\u0000', ']']))]), op: 'suffix' }
    case 6: {
      // A duplicate key: JSON.parse keeps the last one, so the first can hide anything.
      const s = b.toString('utf8')
      const i = s.indexOf('{')
      if (i < 0) return { bytes: b, op: 'dup-none' }
      return { bytes: Buffer.from(`${s.slice(0, i + 1)}${JSON.stringify(oddString(rng))}:${jsonText(oddValue(rng))},${s.slice(i + 1)}`), op: 'dup-key' }
    }
    case 7: {
      // Letters as \u escapes: inside a string the same value spelled otherwise, outside it broken
      // JSON. A generator of its own, so that `rng` moves on the same whatever the text holds.
      const own = rng.fork('escape')
      const s = b.toString('utf8').replace(/[a-z]/g, (c) => (own.chance(0.1) ? `\\u00${c.charCodeAt(0).toString(16)}` : c))
      return { bytes: Buffer.from(s), op: 'escape' }
    }
    default:
      return { bytes: Buffer.concat([Buffer.from('['), b, Buffer.from(']')]), op: 'wrap' }
  }
}
