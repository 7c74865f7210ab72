import OpenAI from 'openai'

export type ApiError = InstanceType<typeof OpenAI.APIError>

/** The official client, pointed at a test coordinator. */
export function buyer(url: string): OpenAI {
  // No retries: every call a test makes must be exactly one request to the coordinator.
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 })
}

/** Awaits a call that must fail with an API error, and returns that error. */
export async function apiError(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err
    throw err
  }
  throw new Error('expected the call to fail with an API error')
}
