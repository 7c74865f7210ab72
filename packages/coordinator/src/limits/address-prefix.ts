import { isIPv4, isIPv6 } from 'node:net'

/**
 * The keys that per-address limits count by (specs/admission.md §7.1). IPv4: the address (/32)
 * and, for the aggregate limits, its /24. IPv6: the /64, because one host commonly holds a whole
 * /64 and would otherwise get a fresh budget per address, and a /48 aggregate. An IPv4-mapped IPv6
 * address counts as the IPv4 address. Pure.
 */
export interface AddressKeys {
  /** IPv4 /32 or IPv6 /64, e.g. `198.51.100.7` or `2001:db8:1:2::/64`. */
  address: string
  /** IPv4 /24 or IPv6 /48, e.g. `198.51.100.0/24`. */
  prefix: string
}

export function addressKeys(peer: string): AddressKeys {
  if (isIPv4(peer)) return v4Keys(peer)
  if (isIPv6(peer)) {
    const groups = expandIPv6(peer)
    if (groups !== null) {
      const v4 = embeddedIPv4(groups)
      if (v4 !== null) return v4Keys(v4)
      return { address: `${groups.slice(0, 4).join(':')}::/64`, prefix: `${groups.slice(0, 3).join(':')}::/48` }
    }
  }
  // Not an address (a test double, a Unix socket): one bucket for all such peers.
  return { address: 'other', prefix: 'other' }
}

function v4Keys(v4: string): AddressKeys {
  const octets = v4.split('.')
  return { address: v4, prefix: `${octets.slice(0, 3).join('.')}.0/24` }
}

/**
 * The IPv4 address inside an IPv4-mapped (::ffff:0:0/96, in any spelling) or NAT64 / SIIT
 * (64:ff9b::/96) IPv6 address: behind such a translator every IPv4 client would otherwise share
 * one /64, and so one budget.
 */
function embeddedIPv4(groups: string[]): string | null {
  const zero = (from: number, to: number): boolean => groups.slice(from, to).every((g) => g === '0')
  const mapped = zero(0, 5) && groups[5] === 'ffff'
  const nat64 = groups[0] === '64' && groups[1] === 'ff9b' && zero(2, 6)
  if (!mapped && !nat64) return null
  const hi = Number.parseInt(groups[6] as string, 16)
  const lo = Number.parseInt(groups[7] as string, 16)
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

/** The eight 16-bit groups of an IPv6 address, lower-case hex without leading zeros; null if not parseable. */
function expandIPv6(ip: string): string[] | null {
  let text = ip.split('%')[0] as string
  // A trailing dotted quad (::ffff:1.2.3.4 was handled above; ::1.2.3.4 and friends land here).
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted !== null) {
    const [a, b, c, d] = (dotted[1] as string).split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) return null
  const head = halves[0] === '' ? [] : (halves[0] as string).split(':')
  const tail = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] as string).split(':')) : []
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0
  const groups = [...head, ...Array<string>(Math.max(0, fill)).fill('0'), ...tail]
  if (groups.length !== 8) return null
  return groups.map((g) => Number.parseInt(g, 16).toString(16))
}
