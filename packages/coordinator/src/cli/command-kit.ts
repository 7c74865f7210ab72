import type { Command } from 'commander'
import type { OperatorApi } from './operator-api.js'

/** The options every operator command takes. */
export interface Common {
  json?: boolean
  url?: string
}

/** What cli.ts hands a group of commands kept in a file of their own (identity-commands.ts). */
export interface CommandKit {
  /** A subcommand with --json and the hidden --coordinator alias. */
  command(name: string, description: string): Command
  /** The admin API if a coordinator answers, else the database, said on stderr. */
  withApi<T>(o: Common, fn: (api: OperatorApi) => Promise<T>): Promise<T>
  /** --url, or its alias --coordinator. */
  urlOf(o: Common & { coordinator?: string }): Common
  /** A checked provider_id, or a usage failure (exit 2) before anything is sent or opened. */
  id(providerId: string): string
  out(s: string): void
}
