/**
 * Database errors are recognised by SQLSTATE and constraint name, never by message text. Both
 * node-postgres and PGlite put `code` and `constraint` on their error objects.
 */
export function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

export function isUniqueViolation(err: unknown, constraint: string): boolean {
  return pgCode(err) === '23505' && (err as { constraint?: unknown }).constraint === constraint
}
