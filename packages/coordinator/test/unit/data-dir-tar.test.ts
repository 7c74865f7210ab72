import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { readDataDirTar, writeDataDir } from '../../src/db/data-dir-tar.js'

/** A ustar archive as dumpDataDir writes one: '/'-led names, directories and regular files. */
function tar(entries: { name: string; type?: string; data?: string }[], o: { end?: boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = []
  for (const e of entries) {
    const data = Buffer.from(e.data ?? '')
    const h = Buffer.alloc(512)
    h.write(e.name, 0, 100, 'latin1')
    h.write('0000600\0', 100, 'latin1')
    h.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1')
    h.write(e.type ?? (e.data === undefined ? '5' : '0'), 156, 'latin1')
    h.write('ustar\0' + '00', 257, 'latin1')
    h.fill(32, 148, 156)
    let sum = 0
    for (const b of h) sum += b
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1')
    parts.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512))
  }
  if (o.end !== false) parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

const WHOLE = [
  { name: '/global' },
  { name: '/global/pg_control', data: 'control' },
  { name: '/PG_VERSION', data: '17\n' },
  { name: '/base/1/1259', data: 'x'.repeat(700) },
]

t.test('a whole data directory reads back entry by entry and is written 0700/0600', async (t) => {
  const entries = readDataDirTar(tar(WHOLE))
  t.same(
    entries?.map((e) => [e.name, e.kind, Buffer.from(e.data).toString()]),
    [
      ['global', 'dir', ''],
      ['global/pg_control', 'file', 'control'],
      ['PG_VERSION', 'file', '17\n'],
      ['base/1/1259', 'file', 'x'.repeat(700)],
    ],
  )
  const root = mkdtempSync(join(tmpdir(), 'poolcoord-tar-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const dest = join(root, 'pglite')
  writeDataDir(entries ?? [], dest)
  t.equal(readFileSync(join(dest, 'base', '1', '1259'), 'utf8'), 'x'.repeat(700), 'a file in a directory the archive did not list')
  t.equal(statSync(dest).mode & 0o777, 0o700)
  t.equal(statSync(join(dest, 'base', '1')).mode & 0o777, 0o700)
  t.equal(statSync(join(dest, 'PG_VERSION')).mode & 0o777, 0o600)
  t.throws(() => writeDataDir(entries ?? [], dest), { code: 'EEXIST' }, 'never writes over an existing file')
})

t.test('anything but a whole data directory is refused', async (t) => {
  const bad: [string, Uint8Array][] = [
    ['a name climbing out', tar([...WHOLE, { name: '/../outside', data: 'x' }])],
    ['a name climbing out in the middle', tar([...WHOLE, { name: '/base/../../outside', data: 'x' }])],
    ['a "." part', tar([...WHOLE, { name: '/base/./x', data: 'x' }])],
    ['a backslash', tar([...WHOLE, { name: '/base/..\\..\\x', data: 'x' }])],
    ['a drive letter', tar([...WHOLE, { name: '/C:x', data: 'x' }])],
    ['a symbolic link', tar([...WHOLE, { name: '/link', type: '2' }])],
    ['a hard link', tar([...WHOLE, { name: '/hard', type: '1' }])],
    ['no pg_control', tar(WHOLE.filter((e) => e.name !== '/global/pg_control'))],
    ['no PG_VERSION', tar(WHOLE.filter((e) => e.name !== '/PG_VERSION'))],
    ['no end-of-archive block', tar(WHOLE, { end: false })],
    ['cut inside a file', tar(WHOLE).subarray(0, 512 * 6 + 100)],
    ['empty', new Uint8Array(0)],
  ]
  const flipped = Buffer.from(tar(WHOLE))
  flipped[512 + 3] = (flipped[512 + 3] as number) ^ 1
  bad.push(['a header whose checksum fails', flipped])
  for (const [name, archive] of bad) t.equal(readDataDirTar(archive), null, name)
})
