import { readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const PACKAGES = fileURLToPath(new URL('../../../', import.meta.url))
const BUILD_INFO = `${PACKAGES}coordinator/tsconfig.tsbuildinfo`
let built: boolean | undefined

/** Whether `npm run build` ran after the last change to the coordinator's and the protocol's sources. */
function buildIsFresh(): boolean {
  if (built !== undefined) return built
  let info: number
  try {
    info = statSync(BUILD_INFO).mtimeMs
  } catch {
    return (built = false)
  }
  const newest = (dir: string): number => {
    let max = 0
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`
      max = Math.max(max, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs)
    }
    return max
  }
  return (built = Math.max(newest(`${PACKAGES}coordinator/src`), newest(`${PACKAGES}protocol/src`)) < info)
}

/**
 * The command line for a child process running `src` (a .ts path under packages/coordinator/src):
 * its compiled twin in dist/ when the build is fresh (what `npm start` runs, and about a second
 * of CPU less per child than transpiling the sources at each start: CI spawns hundreds), else
 * the sources as the tests themselves run: with tap's node arguments (package.json "tap"."node-arg":
 * tsx's loader and the poolcoord-source condition).
 */
export function childEntry(src: string): { args: string[] } {
  if (buildIsFresh()) return { args: ['--enable-source-maps', src.replace('/coordinator/src/', '/coordinator/dist/').replace(/\.ts$/, '.js')] }
  const loader = process.execArgv.filter((a) => a === '--import=tsx' || a.startsWith('--conditions='))
  return { args: [...loader, '--enable-source-maps', src] }
}
