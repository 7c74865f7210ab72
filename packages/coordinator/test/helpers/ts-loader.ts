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
