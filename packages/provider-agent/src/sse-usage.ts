/**
 * The token counts of an answer, for the end frame's `usage`: from a whole JSON answer, or from
 * the SSE event that carries them (`stream_options.include_usage`). Pure.
 */
import { parseUsage, type Usage } from '@poolcoord/protocol'

/** A partial SSE line longer than this is dropped: no usage event is that long. */
export const MAX_SSE_LINE = 1024 * 1024

const USAGE_KEY = '"usage"'

export function usageOfJson(text: string): Usage | null {
  // Most answers are small, but a 16 MiB one need not be parsed to learn it has no usage.
  if (!text.includes(USAGE_KEY)) return null
  try {
    return parseUsage((JSON.parse(text) as { usage?: unknown }).usage)
  } catch {
    return null
  }
}

/** Watches an SSE stream for the `usage` an OpenAI server sends in its last events. */
export class SseUsage {
  usage: Usage | null = null
  private line = ''

  feed(text: string): void {
    const nl = text.lastIndexOf('\n')
    if (nl < 0) {
      this.line = this.line.length + text.length > MAX_SSE_LINE ? '' : this.line + text
      return
    }
    // Only complete lines are read, and only when one of them may carry usage: most events do not,
    // and splitting every read into lines would cost more than relaying it.
    const complete = this.line.length === 0 ? text.slice(0, nl) : this.line + text.slice(0, nl)
    const rest = text.slice(nl + 1)
    this.line = rest.length > MAX_SSE_LINE ? '' : rest
    if (!complete.includes(USAGE_KEY)) return
    for (const l of complete.split('\n')) {
      if (!l.startsWith('data:') || !l.includes(USAGE_KEY)) continue
      try {
        const u = parseUsage((JSON.parse(l.slice(5)) as { usage?: unknown }).usage)
        if (u !== null) this.usage = u
      } catch {
        // Not JSON ([DONE], a comment): nothing to read.
      }
    }
  }
}
