import type { ServerResponse } from 'node:http'
import { toPublicError } from '../errors.js'

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(text)
}

/** Errors reach clients only through toPublicError: a stable code, and no internals on 5xx. */
export function sendError(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  const pub = toPublicError(err)
  sendJson(res, pub.status, pub.body, headers)
}
