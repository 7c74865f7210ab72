import { createHash } from 'node:crypto'
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync, gzipSync } from 'node:zlib'
import { PGlite } from '@electric-sql/pglite'
import type { Database } from '../../src/db/database.js'
import { migrate, SQL_DIR } from '../../src/db/migrate.js'

/*
 * A fresh PGlite runs initdb, which costs seconds of CPU and hundreds of MB. Instead, one migrated
 * template data directory is built per migration set and PGlite version, kept as a gzipped tarball
 * in the OS temporary directory for every test process to share, and each test database starts
 * from it (PGlite's loadDataDir): a real, private PGlite in a fraction of a second.
 *
 * - Key: the PGlite version, migrate.ts, and every migration file's name and text, so a changed
 *   migration set builds a new template.
 * - Concurrent first use: each builder writes a private temporary file and renames it into place,
 *   which is atomic, so a reader sees a whole template or none (two may build; both are valid).
 * - A corrupt or truncated file fails gzip's length and CRC check, or the tar check below, and is
 *   rebuilt; a template that still fails to open is dropped and rebuilt once (withPgliteTemplate).
 */

/** Bump when the way the template is made changes. */
const FORMAT = 2
const PREFIX = 'pglite-template-'
const MIGRATE_TS = fileURLToPath(new URL('../../src/db/migrate.ts', import.meta.url))

let cached: Promise<Blob> | undefined

/** The migrated template as a data directory tarball; read (or built) once per process. */
export function pgliteTemplate(): Promise<Blob> {
  if (cached === undefined) {
    const p = loadOrBuild()
    cached = p
    // A failed build is not remembered: the next caller tries again.
    p.catch(() => {
      if (cached === p) cached = undefined
    })
  }
  return cached
}

/**
 * Runs open(template). If that throws, the template is suspect: it is deleted and rebuilt, and
 * open runs once more with the new one.
 */
export async function withPgliteTemplate<T>(open: (template: Blob) => Promise<T>): Promise<T> {
  const template = await pgliteTemplate()
  try {
    return await open(template)
  } catch {
    if ((await cached?.catch(() => undefined)) === template) {
      cached = undefined
      const file = templateFile()
      if (file !== null) rmSync(file, { force: true })
    }
    return open(await pgliteTemplate())
  }
}

async function loadOrBuild(): Promise<Blob> {
  const file = templateFile()
  if (file !== null) {
    try {
      const tar = gunzipSync(readFileSync(file))
      if (isDataDirTar(tar)) return new Blob([tar])
    } catch {
      // Missing, or unreadable/corrupt (gzip checks length and CRC): build it anew below.
    }
  }
  const tar = await build()
  if (file !== null) save(file, gzipSync(tar, { level: 1 }))
  return new Blob([tar])
}

/** initdb and every migration, on an in-memory PGlite, then its data directory as a tarball. */
async function build(): Promise<Uint8Array<ArrayBuffer>> {
  const lite = await PGlite.create()
  try {
    // migrate() needs only a transaction; this is openDatabase's PGlite rawTransaction.
    const db: Pick<Database, 'rawTransaction'> = {
      rawTransaction: (fn) =>
        lite.transaction((tx) =>
          fn({
            exec: async (text) => void (await tx.exec(text)),
            query: async <R>(text: string, params: unknown[]) => (await tx.query<R>(text, params)).rows,
          }),
        ),
    }
    await migrate(db as Database)
    // A test database holds a few rows: 16MB of buffers instead of 128MB starts each copy ~20%
    // faster and keeps its WebAssembly memory at 134MB instead of 193MB.
    await lite.exec(`ALTER SYSTEM SET shared_buffers = '16MB'`)
    // Flush to the data files, so that each copy starts with no WAL to replay.
    await lite.exec('CHECKPOINT')
    return new Uint8Array(await (await lite.dumpDataDir('none')).arrayBuffer())
  } finally {
    await lite.close()
  }
}

/**
 * A whole tar of a data directory: every header's checksum holds, the entries end exactly at the
 * end-of-archive blocks, and PG_VERSION and global/pg_control are there. PGlite itself would
 * throw from a detached promise (an uncaught error) on a tarball it cannot read.
 */
function isDataDirTar(tar: Uint8Array): boolean {
  const text = (at: number, len: number) =>
    Buffer.from(tar.subarray(at, at + len))
      .toString('latin1')
      .replace(/\0.*$/s, '')
  const names = new Set<string>()
  let at = 0
  while (at + 512 <= tar.length) {
    const header = tar.subarray(at, at + 512)
    if (header.every((b) => b === 0)) return names.has('PG_VERSION') && names.has('global/pg_control')
    let sum = 0
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (header[i] as number)
    const size = parseInt(text(at + 124, 12).trim() || '0', 8)
    if (sum !== parseInt(text(at + 148, 8).trim(), 8) || !Number.isInteger(size) || size < 0) return false
    const prefix = text(at + 345, 155)
    names.add(`${prefix === '' ? '' : `${prefix}/`}${text(at, 100)}`.replace(/^\/+/, ''))
    at += 512 + Math.ceil(size / 512) * 512
  }
  return false
}

function save(file: string, gz: Uint8Array): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`
  try {
    writeFileSync(tmp, gz, { mode: 0o600 })
    renameSync(tmp, file)
  } catch {
    rmSync(tmp, { force: true }) // a cache that cannot be written only costs time
    return
  }
  // Templates of other migration sets, and temporary files of builders that died, a day old: a
  // run still using one has read it already, or rebuilds it.
  const dir = join(file, '..')
  for (const name of readdirSync(dir)) {
    const other = join(dir, name)
    if (!name.startsWith(PREFIX) || other === file) continue
    try {
      if (Date.now() - statSync(other).mtimeMs > 86_400_000) rmSync(other, { force: true })
    } catch {
      // gone already
    }
  }
}

let fileName: string | null | undefined

/** <tmp>/poolcoord-test-<uid>/pglite-template-<key>.tar.gz; null if there is no private directory. */
function templateFile(): string | null {
  if (fileName !== undefined) return fileName
  const uid = process.getuid?.() ?? 0
  const dir = join(tmpdir(), `poolcoord-test-${uid}`)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const st = lstatSync(dir)
    // Someone else's directory (or a link) is not trusted: build per process instead.
    fileName = st.isDirectory() && (process.getuid === undefined || st.uid === uid) ? join(dir, `${PREFIX}${key()}.tar.gz`) : null
  } catch {
    fileName = null
  }
  return fileName
}

function key(): string {
  const hash = createHash('sha256')
  const pglite = new URL('../package.json', import.meta.resolve('@electric-sql/pglite'))
  hash.update(`format ${FORMAT}\0pglite ${(JSON.parse(readFileSync(pglite, 'utf8')) as { version: string }).version}\0`)
  hash.update(readFileSync(MIGRATE_TS))
  for (const name of readdirSync(SQL_DIR).sort()) {
    if (name.endsWith('.sql')) hash.update(`\0${name}\0`).update(readFileSync(join(SQL_DIR, name)))
  }
  return hash.digest('hex').slice(0, 24)
}
