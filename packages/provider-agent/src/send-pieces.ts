/**
 * Cuts decoded text into chunk pieces: at most MAX_PIECE characters each, so that one backend read
 * never makes a frame past the coordinator's 1 MiB limit, and never between the two halves of a
 * surrogate pair, so that every piece is valid text on its own. Pure, apart from calling `send`.
 */

/** Characters per chunk frame; at most 4 bytes each in UTF-8, JSON escaping aside, well under 1 MiB. */
export const MAX_PIECE = 128 * 1024

/** Sends one piece; a promise means the coordinator socket is backed up: wait before sending more. */
export type Send = (data: string) => Promise<void> | undefined

/** Where the piece that starts at `from` ends. */
export function pieceEnd(text: string, from: number, max = MAX_PIECE): number {
  if (text.length - from <= max) return text.length
  const end = from + max
  const c = text.charCodeAt(end - 1)
  // A high surrogate here would be parted from its low half in the next piece.
  return c >= 0xd800 && c <= 0xdbff ? end - 1 : end
}

/** Where the last piece of `text` starts when the whole of it is cut into pieces from 0. */
export function lastPieceStart(text: string, max = MAX_PIECE): number {
  let from = 0
  for (let end = pieceEnd(text, 0, max); end < text.length; end = pieceEnd(text, from, max)) from = end
  return from
}

/**
 * Sends text[from, to) in pieces, in order. Returns undefined when every piece went at once (the
 * common case: no promise, no await), else a promise that resolves once the last piece went, each
 * piece having waited for the socket to take the one before.
 */
export function sendRange(text: string, from: number, to: number, send: Send, max = MAX_PIECE): Promise<void> | undefined {
  while (from < to) {
    const end = Math.min(to, pieceEnd(text, from, max))
    const wait = send(from === 0 && end === text.length ? text : text.slice(from, end))
    from = end
    if (wait !== undefined) return from < to ? wait.then(() => sendRange(text, from, to, send, max)) : wait
  }
  return undefined
}
