import type { ServerResponse } from 'node:http'
import type { Reservation } from '../routing/byte-budget.js'

/**
 * After a response has ended, its last bytes may still sit in our send buffer. They stay counted
 * in the reservation until they are sent, and a buyer that makes no progress reading them for
 * `stallMs` is cut (a slow but steady reader is not). Releases the reservation when the
 * response finishes or closes.
 */
export function watchUnsent(res: ServerResponse, reservation: Reservation, stallMs: number, onStall: (unsent: number) => void): void {
  reservation.hold(res.writableLength)
  // Node sends a response's last bytes when it uncorks the socket, at the end of this tick, and
  // the kernel usually takes them all: look again then, and watch only what is still unsent.
  // Most responses so end without a timer or a listener of their own.
  setImmediate(() => {
    if (res.writableFinished || res.destroyed || res.writableLength === 0) return reservation.release()
    watch(res, reservation, stallMs, onStall)
  })
}

function watch(res: ServerResponse, reservation: Reservation, stallMs: number, onStall: (unsent: number) => void): void {
  reservation.hold(res.writableLength)
  let last = res.writableLength
  const timer = setInterval(() => {
    const now = res.writableLength
    if (now < last) {
      last = now
      reservation.hold(now)
      return
    }
    onStall(now)
    res.destroy()
  }, stallMs)
  timer.unref()
  const stop = (): void => {
    clearInterval(timer)
    reservation.release()
  }
  res.once('finish', stop)
  res.once('close', stop)
}
