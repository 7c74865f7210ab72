import type { IdentityActionResponse } from '@poolcoord/protocol'
import type { CommandKit, Common } from './command-kit.js'
import { plural, printTable } from './print.js'

/** list-identities, revoke-identity and reset-identity (specs/cli.md): pinned identity keys, shown by fingerprint only. */
export function addIdentityCommands(k: CommandKit): void {
  const { out } = k
  k.command('list-identities', 'pinned identity keys: provider, generation, key fingerprints, dates; never a key').action(async (o: Common) => {
    const rows = await k.withApi(k.urlOf(o), (api) => api.listIdentities())
    if (o.json) return out(JSON.stringify(rows))
    printTable(
      out,
      ['provider_id', 'generation', 'key_fingerprint', 'previous_key_fingerprint', 'previous_valid_until', 'created_at', 'rotated_at', 'revoked'],
      rows.map((r) => [
        r.provider_id,
        String(r.generation),
        r.key_fingerprint,
        r.previous_key_fingerprint ?? '-',
        r.previous_valid_until ?? '-',
        r.created_at,
        r.rotated_at ?? '-',
        r.revoked_at ?? 'no',
      ]),
    )
  })

  k.command('revoke-identity', 'block a provider_id (no connect, recovery or enrolment) until reset-identity; revokes its tokens and closes its live session')
    .requiredOption('--provider-id <id>', 'the provider_id, as list-identities shows it')
    .action(async (o: Common & { providerId: string }) => {
      const providerId = k.id(o.providerId)
      const r = await k.withApi(k.urlOf(o), (api) => api.revokeIdentity(providerId))
      if (o.json) return out(JSON.stringify(r))
      out(
        `blocked ${r.provider_id}: nothing connects, recovers or enrolls as it until reset-identity --provider-id ${r.provider_id}. ` +
          `${revoked(r)}; ${r.kicked === null ? 'no coordinator answered, so no live session was closed' : r.kicked ? 'its live session was closed' : 'it had no live session'}.`,
      )
    })

  k.command('reset-identity', 'delete the pinned key of a provider_id and revoke its tokens, so that it may enroll afresh')
    .requiredOption('--provider-id <id>', 'the provider_id')
    .action(async (o: Common & { providerId: string }) => {
      const providerId = k.id(o.providerId)
      const r = await k.withApi(k.urlOf(o), (api) => api.resetIdentity(providerId))
      if (o.json) return out(JSON.stringify(r))
      out(
        `reset ${r.provider_id}: its key is no longer pinned; ${revoked(r)}. The id may now enroll afresh, and first use wins again: ` +
          'the first provider to enroll as it pins its key. Run this when the right provider is ready to connect, or issue it a token ' +
          `(issue-token --provider-id ${r.provider_id}; required when require_provider_tokens is on): while the id has an active token, only its holder can enroll. ` +
          'A live session is not closed (revoke-identity closes it).',
      )
    })
}

function revoked(r: IdentityActionResponse): string {
  return `${plural(r.revoked_tokens, 'token')} revoked`
}
