import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * Checks `Authorization: Bearer <operator key>` in constant time: both sides are hashed first,
 * so neither the length nor the content of the key leaks through timing. An empty key denies.
 */
export function createOperatorAuth(key: string): (header: string | undefined) => boolean {
  if (key.length === 0) throw new Error('operator key must not be empty')
  const expected = digest(key)
  return (header) => {
    if (typeof header !== 'string' || !header.startsWith('Bearer ')) return false
    const presented = header.slice('Bearer '.length).trim()
    if (presented.length === 0) return false
    return timingSafeEqual(digest(presented), expected)
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}
