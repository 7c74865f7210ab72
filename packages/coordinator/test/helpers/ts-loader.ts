import { readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * How a child process runs a TypeScript entry point through the test runner's own loader: the
 * loader's --import flag, and the settings tap gives it (transpile only, this tsconfig). Without
 * those settings ts-node would type-check the whole program at every start: seconds per child.
 */
export function tsLoader(): { execArgv: string[]; env: Record<string, string> } {
  const execArgv = process.execArgv.filter((a) => a.includes('@tapjs/typescript'))
  const env: Record<string, string> = {}
  for (const name of ['TS_NODE_TRANSPILE_ONLY', 'TS_NODE_PROJECT', 'TAP_TYPE_STRIP_ONLY']) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return { execArgv, env }
}

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
 * the sources through the test runner's loader.
 */
export function childEntry(src: string): { args: string[]; env: Record<string, string> } {
  if (buildIsFresh()) return { args: ['--enable-source-maps', src.replace('/coordinator/src/', '/coordinator/dist/').replace(/\.ts$/, '.js')], env: {} }
  const loader = tsLoader()
  return { args: [...loader.execArgv, '--enable-source-maps', src], env: loader.env }
}
