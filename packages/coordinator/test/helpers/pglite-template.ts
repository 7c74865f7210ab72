import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { buildPgliteSeed, pgliteSeedKey, readPgliteSeed } from '../../src/db/pglite-seed.js'

/*
 * A fresh PGlite runs initdb, which costs seconds of CPU and hundreds of MB. Each test database
 * starts instead from a migrated data directory (PGlite's loadDataDir): the seed that
 * `npm run build` made (src/db/pglite-seed.ts), or, when none was built for these migrations,
 * the same thing built here once and kept as a gzipped tarball in the OS temporary directory for
 * every test process to share. A real, private PGlite in a fraction of a second.
 *
 * - Key: the seed's (the PGlite version and every migration file), so a changed migration set
 *   builds a new template.
 * - Concurrent first use: each builder writes a private temporary file and renames it into place,
 *   which is atomic, so a reader sees a whole template or none (two may build; both are valid).
 * - A corrupt or truncated file fails gzip's length and CRC check, or the tar check, and is
 *   rebuilt; a template that still fails to open is dropped and rebuilt once (withPgliteTemplate).
 */

const PREFIX = 'pglite-template-'

let cached: Promise<Blob> | undefined

/** The migrated template as a data directory tarball; read (or built) once per process. */
export function pgliteTemplate(): Promise<Blob> {
  return templateOnce(false)
}

function templateOnce(skipBuilt: boolean): Promise<Blob> {
  if (cached === undefined) {
    const p = loadOrBuild(skipBuilt)
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
    // Not the built seed again, whether or not it was the one that failed: one of our own.
    return open(await templateOnce(true))
  }
}

async function loadOrBuild(skipBuilt: boolean): Promise<Blob> {
  const seed = skipBuilt ? null : readPgliteSeed()
  if (seed !== null) return new BytesBlob(seed.tar)
  const file = templateFile()
  // Missing, or unreadable/corrupt (gzip checks length and CRC, then the tar check): built anew below.
  const saved = file === null ? null : readPgliteSeed(file)
  if (saved !== null) return new BytesBlob(saved.tar)
  const tar = await buildPgliteSeed()
  if (file !== null) save(file, gzipSync(tar, { level: 1 }))
  return new BytesBlob(tar)
}

/**
 * The template as PGlite reads it (loadDataDir: `arrayBuffer()`, then untar). Node 20's own Blob
 * reads itself in small pieces and joins them: about a quarter of a second of CPU for this ~40 MB
 * tarball, at every test database. Held as bytes, a read is one copy (PGlite's files must not
 * share memory with the template).
 */
class BytesBlob extends Blob {
  constructor(private readonly held: Uint8Array) {
    super([])
  }

  override get size(): number {
    return this.held.length
  }

  override arrayBuffer(): Promise<ArrayBuffer> {
    // A copy with its own buffer: `held` may be a Buffer, whose slice() is a view, not a copy.
    return Promise.resolve(new Uint8Array(this.held).buffer)
  }
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
    fileName = st.isDirectory() && (process.getuid === undefined || st.uid === uid) ? join(dir, `${PREFIX}${pgliteSeedKey()}.tar.gz`) : null
  } catch {
    fileName = null
  }
  return fileName
}
