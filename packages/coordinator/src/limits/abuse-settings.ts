import { ConfigError } from '../errors.js'
import { parseRate, type Rate } from './rate.js'
import type { MintRules } from './mint-limiter.js'

/** The abuse-limit settings as the environment gave them (config.ts reads process.env). */
export interface AbuseEnv {
  mintRateAddress?: string
  mintRatePrefix?: string
  mintRateGlobal?: string
  recoveryRate?: string
  mintRateNewcomer?: string
  healRate?: string
  admissionDeadlineS?: string
  maxPending?: string
  maxPendingPerAddress?: string
  maxSessionsPerAddress?: string
  maxUnprovenPerAddress?: string
}

export const defaultMintRules: MintRules = {
  mintPerAddress: { burst: 10, periodMs: 3_600_000 },
  mintPerPrefix: { burst: 40, periodMs: 3_600_000 },
  mintGlobal: { burst: 120, periodMs: 3_600_000 },
  mintNewcomer: { burst: 30, periodMs: 3_600_000 },
  recoveryPerId: { burst: 5, periodMs: 3_600_000 },
  healPerId: { burst: 30, periodMs: 3_600_000 },
}

/** No mint limits: for tests and benchmarks that mint many identities from one address on purpose. */
export const noMintRules: MintRules = { mintPerAddress: null, mintPerPrefix: null, mintGlobal: null, mintNewcomer: null, recoveryPerId: null, healPerId: null }

export interface AbuseLimits {
  mint: MintRules
  admissionDeadlineMs: number
  maxPendingConnections: number
  maxPendingPerIp: number
  maxSessionsPerAddress: number
  maxUnprovenPerAddress: number
}

export function abuseLimitsFromEnv(env: AbuseEnv): Partial<AbuseLimits> {
  const out: Partial<AbuseLimits> = {}
  const mint: Partial<MintRules> = {}
  const rate = (raw: string | undefined, name: string, key: keyof MintRules): void => {
    if (raw === undefined || raw.trim() === '') return
    const r: Rate | null | string = parseRate(raw, name)
    if (typeof r === 'string') throw new ConfigError(r)
    mint[key] = r
  }
  rate(env.mintRateAddress, 'COORD_MINT_RATE_ADDRESS', 'mintPerAddress')
  rate(env.mintRatePrefix, 'COORD_MINT_RATE_PREFIX', 'mintPerPrefix')
  rate(env.mintRateGlobal, 'COORD_MINT_RATE_GLOBAL', 'mintGlobal')
  rate(env.recoveryRate, 'COORD_RECOVERY_RATE', 'recoveryPerId')
  rate(env.mintRateNewcomer, 'COORD_MINT_RATE_NEWCOMER', 'mintNewcomer')
  rate(env.healRate, 'COORD_HEAL_RATE', 'healPerId')
  if (Object.keys(mint).length > 0) out.mint = { ...defaultMintRules, ...mint }
  const int = (raw: string | undefined, name: string, min: number, max: number): number | undefined => {
    if (raw === undefined || raw.trim() === '') return undefined
    const n = Number(raw)
    if (!/^\d+$/.test(raw.trim()) || n < min || n > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}`)
    return n
  }
  const deadline = int(env.admissionDeadlineS, 'COORD_ADMISSION_DEADLINE_S', 2, 120)
  if (deadline !== undefined) out.admissionDeadlineMs = deadline * 1000
  const pending = int(env.maxPending, 'COORD_MAX_PENDING', 16, 65_536)
  if (pending !== undefined) out.maxPendingConnections = pending
  const perAddress = int(env.maxPendingPerAddress, 'COORD_MAX_PENDING_PER_ADDRESS', 1, 1024)
  if (perAddress !== undefined) out.maxPendingPerIp = perAddress
  const sessions = int(env.maxSessionsPerAddress, 'COORD_MAX_SESSIONS_PER_ADDRESS', 1, 1_000_000)
  if (sessions !== undefined) out.maxSessionsPerAddress = sessions
  const unproven = int(env.maxUnprovenPerAddress, 'COORD_MAX_UNPROVEN_PER_ADDRESS', 0, 1_000_000)
  if (unproven !== undefined) out.maxUnprovenPerAddress = unproven
  return out
}
