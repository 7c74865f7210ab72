import type { PoolzResponse, PoolzRow } from '@poolcoord/protocol'

export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message)
  }
}

/** The few operator endpoints the CLI calls on a running coordinator. */
export class CoordinatorClient {
  constructor(
    private readonly baseUrl: string,
    private readonly key: string | null,
  ) {}

  /** The live sessions, or null when the coordinator cannot be reached at all. */
  async poolz(): Promise<PoolzRow[] | null> {
    const res = await this.call('GET', '/poolz').catch((err: unknown) => {
      if (err instanceof CliFailure) throw err
      return null
    })
    if (res === null) return null
    const body = (await res.json()) as PoolzResponse
    return body.pool
  }

  /** Closes the live session of providerId; false when it has none. */
  async kick(providerId: string): Promise<boolean> {
    const res = await this.call('POST', `/admin/providers/${encodeURIComponent(providerId)}/kick`)
    return res.status === 200
  }

  private async call(method: string, path: string): Promise<Response> {
    if (this.key === null) throw new CliFailure("no operator key: set COORD_OPERATOR_KEY or COORD_DATA_DIR to the coordinator's")
    let res: Response
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.key}` },
        signal: AbortSignal.timeout(10_000),
      })
    } catch {
      throw new Error(`cannot reach the coordinator at ${this.baseUrl}`)
    }
    if (res.status === 401) throw new CliFailure(`the coordinator at ${this.baseUrl} refused the operator key`)
    if (res.status !== 200 && res.status !== 404) throw new CliFailure(`the coordinator at ${this.baseUrl} answered ${res.status}`)
    return res
  }
}
