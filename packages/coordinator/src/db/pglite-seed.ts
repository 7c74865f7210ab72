import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync, gzipSync } from 'node:zlib'
import { PGlite } from '@electric-sql/pglite'
import { readDataDirTar, writeDataDir, type TarEntry } from './data-dir-tar.js'
import { pgliteRawTransaction } from './pglite-transaction.js'
import { migrate, SQL_DIR } from './migrate.js'

/*
 * The embedded database's first start. A fresh PGlite runs initdb in the coordinator's process:
 * about 4 s of CPU, a peak near 900 MB, and, because WebAssembly memory never shrinks, about
 * 790 MB held for as long as the process lives. Instead, the build (pglite-seed-build.ts) runs
 * initdb and every migration once, in a process of its own, and keeps the data directory as a
 * gzipped tarball in dist/pglite-seed/. A first start writes it to disk and opens it as any
 * later start would. Without a seed that fits (none built, another PGlite version, other
 * migrations) the first start runs initdb as before and says so.
 *
 * A seed is an ordinary database made by an earlier build: migrate() brings it forward like any
 * other, so the key needs only what makes the files differ.
 */

/** Bump when the way a seed is made changes (its build, PGLITE_START_PARAMS, how migrate() records what it ran). */
const FORMAT = 2

/**
 * What every PGlite of ours starts with: PGlite's defaults, except
 * - fsync on (its defaults pass `-F`), with `wal_sync_method=fsync`, the one method whose calls
 *   reach the filesystem in the WebAssembly build: a commit waits for its WAL on the disk
 *   (db/pglite-durability.ts gives the Node filesystem its fsync). In memory (the tests) the calls
 *   cost nothing.
 * - shared_buffers 16MB instead of 128MB: the tokens, pins and cordons of a large pool fit in a
 *   few MB, and the rest only holds WebAssembly memory (an idle coordinator: about 330 MB of
 *   PGlite with 128MB, about 200 MB with 16MB).
 */
export const PGLITE_START_PARAMS: readonly string[] = [
  ...PGlite.defaultStartParams.filter((p) => p !== '-F'),
  '-c',
  'wal_sync_method=fsync',
  '-c',
  'shared_buffers=16MB',
]

/** dist/pglite-seed/, two levels above both src/db/ (tests) and dist/db/ (built). */
export const SEED_DIR = fileURLToPath(new URL('../../dist/pglite-seed/', import.meta.url))

/** FORMAT, the PGlite version, and every migration file's name and text. */
export function pgliteSeedKey(): string {
  const hash = createHash('sha256')
  // The package's CommonJS entry is dist/index.cjs: its package.json is one level up.
  const pkg = path.join(path.dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite')), '..', 'package.json')
  hash.update(`format ${FORMAT}\0pglite ${(JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version}\0`)
  for (const name of readdirSync(SQL_DIR).sort()) {
    if (name.endsWith('.sql')) hash.update(`\0${name}\0`).update(readFileSync(path.join(SQL_DIR, name)))
  }
  return hash.digest('hex').slice(0, 24)
}

export function pgliteSeedFile(key = pgliteSeedKey()): string {
  return path.join(SEED_DIR, `${key}.tar.gz`)
}

/** The built seed, as its uncompressed tarball and read: null when there is none for this key or it is damaged. */
export function readPgliteSeed(file = pgliteSeedFile()): { tar: Uint8Array; entries: TarEntry[] } | null {
  if (!existsSync(file)) return null
  try {
    const tar = gunzipSync(readFileSync(file)) // gzip checks its length and CRC
    const entries = readDataDirTar(tar)
    return entries === null ? null : { tar, entries }
  } catch {
    return null
  }
}

/** initdb and every migration on an in-memory PGlite; its data directory as an uncompressed tarball. */
export async function buildPgliteSeed(): Promise<Uint8Array<ArrayBuffer>> {
  const lite = await PGlite.create({ startParams: [...PGLITE_START_PARAMS] })
  try {
    await migrate({ rawTransaction: pgliteRawTransaction(lite) })
    // Flushed to the data files, so that a database made from it has no WAL to replay.
    await lite.exec('CHECKPOINT')
    return new Uint8Array(await (await lite.dumpDataDir('none')).arrayBuffer())
  } finally {
    await lite.close()
  }
}

/**
 * The build step (`npm run build`): makes this key's seed unless it is there and whole, and
 * removes the seeds of other keys. Written to a temporary name and renamed, so that a start never
 * reads half a seed.
 */
export async function ensurePgliteSeed(): Promise<{ file: string; built: boolean }> {
  const file = pgliteSeedFile()
  if (readPgliteSeed(file) !== null) return { file, built: false }
  const gz = gzipSync(await buildPgliteSeed(), { level: 9 })
  mkdirSync(SEED_DIR, { recursive: true })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, gz)
  renameSync(tmp, file)
  // Seeds of other keys go; another build's temporary file only once it is an hour old, since
  // that build may be about to rename it.
  for (const name of readdirSync(SEED_DIR)) {
    const other = path.join(SEED_DIR, name)
    if (other === file) continue
    try {
      if (name.endsWith('.tar.gz') || Date.now() - statSync(other).mtimeMs > 3_600_000) rmSync(other, { force: true })
    } catch {
      // gone already
    }
  }
  return { file, built: true }
}

/**
 * Makes dir (absent, or a directory with no PG_VERSION: a first start) the seed's data directory.
 * It is written in place, PG_VERSION last, so that dir may be a symbolic link or a mount point: a
 * crash part-way leaves no PG_VERSION, and the next start, holding the lock as this one does,
 * removes what the seed's top-level names hold (what a crashed seeding or initdb left) and writes
 * it again. Anything else in dir (lost+found) is left alone.
 */
export function plantPgliteSeed(entries: TarEntry[], dir: string): void {
  if (existsSync(path.join(dir, 'PG_VERSION'))) throw new Error(`${dir} holds a database already`)
  const clear = () => {
    for (const top of new Set(entries.map((e) => e.name.split('/')[0] as string))) rmSync(path.join(dir, top), { recursive: true, force: true })
  }
  clear()
  try {
    writeDataDir(entries, dir)
  } catch (err) {
    clear() // a full disk, say: initdb, which runs next, gets the directory as it found it
    throw err
  }
}
