import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync, gzipSync } from 'node:zlib'
import { PGlite } from '@electric-sql/pglite'
import { readDataDirTar, writeDataDir } from './data-dir-tar.js'
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

/** Bump when the way a seed is made changes. */
const FORMAT = 1

/**
 * What every PGlite of ours starts with. shared_buffers is 128MB by default: the tokens, pins and
 * cordons of a large pool fit in a few MB, and the rest only holds WebAssembly memory (an idle
 * coordinator: about 330 MB of PGlite with 128MB, about 200 MB with 16MB).
 */
export const PGLITE_START_PARAMS: readonly string[] = [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB']

/** dist/pglite-seed/, two levels above both src/db/ (tests) and dist/db/ (built). */
export const SEED_DIR = fileURLToPath(new URL('../../dist/pglite-seed/', import.meta.url))

/** FORMAT, the PGlite version, and every migration file's name and text. */
export function pgliteSeedKey(): string {
  const hash = createHash('sha256')
  const pkg = new URL('../package.json', import.meta.resolve('@electric-sql/pglite'))
  hash.update(`format ${FORMAT}\0pglite ${(JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version}\0`)
  for (const name of readdirSync(SQL_DIR).sort()) {
    if (name.endsWith('.sql')) hash.update(`\0${name}\0`).update(readFileSync(path.join(SQL_DIR, name)))
  }
  return hash.digest('hex').slice(0, 24)
}

export function pgliteSeedFile(key = pgliteSeedKey()): string {
  return path.join(SEED_DIR, `${key}.tar.gz`)
}

/** The built seed's uncompressed tarball, or null when there is none for this key or it is damaged. */
export function readPgliteSeed(file = pgliteSeedFile()): Uint8Array | null {
  if (!existsSync(file)) return null
  try {
    const tar = gunzipSync(readFileSync(file)) // gzip checks its length and CRC
    return readDataDirTar(tar) === null ? null : tar
  } catch {
    return null
  }
}

/** initdb and every migration on an in-memory PGlite; its data directory as an uncompressed tarball. */
export async function buildPgliteSeed(): Promise<Uint8Array<ArrayBuffer>> {
  const lite = await PGlite.create({ startParams: [...PGLITE_START_PARAMS] })
  try {
    // migrate() needs only a transaction, as openDatabase's PGlite rawTransaction gives it.
    const db: Pick<Parameters<typeof migrate>[0], 'rawTransaction'> = {
      rawTransaction: (fn) =>
        lite.transaction((tx) =>
          fn({
            exec: async (text) => void (await tx.exec(text)),
            query: async <R>(text: string, params: unknown[]) => (await tx.query<R>(text, params)).rows,
          }),
        ),
    }
    await migrate(db as Parameters<typeof migrate>[0])
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
  for (const name of readdirSync(SEED_DIR)) {
    if (path.join(SEED_DIR, name) !== file) rmSync(path.join(SEED_DIR, name), { force: true })
  }
  return { file, built: true }
}

/**
 * Makes dir (absent, or an empty directory) the seed's data directory: written beside it, then
 * renamed into place, so that a crash leaves either no database or a whole one. Returns false,
 * with dir untouched, when the tarball is not a whole data directory.
 */
export function plantPgliteSeed(tar: Uint8Array, dir: string): boolean {
  const entries = readDataDirTar(tar)
  if (entries === null) return false
  // The caller holds the data directory's lock: a leftover of a crashed first start is ours to drop.
  const tmp = `${dir}.seeding`
  rmSync(tmp, { recursive: true, force: true })
  try {
    writeDataDir(entries, tmp)
    renameSync(tmp, dir) // replaces an empty directory; fails on one with files in it
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true })
    throw err
  }
  return true
}
