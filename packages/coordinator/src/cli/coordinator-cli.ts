#!/usr/bin/env node
import { runCli } from './cli.js'

/** The coordinator-cli executable: process streams and environment in, exit code out. */
process.exitCode = await runCli(process.argv.slice(2), undefined, {
  out: (s) => void process.stdout.write(`${s}\n`),
  err: (s) => void process.stderr.write(s),
})
