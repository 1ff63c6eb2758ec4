// A doorbell: an eventfd that one process rings and another waits on in its event loop. It is
// the wake-up of shared-memory rings (a side that found nothing to do sleeps on it; the other
// side rings only when it sees that side asleep), and costs nothing while nobody rings.
import { readlinkSync } from 'node:fs'
import { FdpassError } from './errors.js'
import * as native from './native.js'
import { Readiness } from './readiness.js'

/**
 * One eventfd. `ring()` from any process that holds the fd; `watch(onRing)` to be called back
 * from this process's event loop when it was rung (the counter is reset before the call, so
 * rings that race with the callback are never lost: they ring it again).
 */
export class Doorbell implements Disposable {
  readonly #fd: number
  #readiness: Readiness | undefined
  #onRing: (() => void) | undefined
  #ref = true
  #closed = false

  private constructor(fd: number) {
    this.#fd = fd
  }

  /** A new doorbell (a non-blocking, close-on-exec eventfd). */
  static create(): Doorbell {
    try {
      return new Doorbell(native.eventFd())
    } catch (error) {
      throw FdpassError.fromNative(error, 'Doorbell.create')
    }
  }

  /**
   * Takes a doorbell received from another process. The Doorbell owns `fd` from this call on;
   * it is closed at once if it is not a non-blocking eventfd (a peer could otherwise hand us
   * a pipe whose read would block the event loop): ERR_FDPASS_INVALID_ARGUMENT.
   */
  static fromFd(fd: number): Doorbell {
    let kind = ''
    try {
      kind = readlinkSync(`/proc/self/fd/${fd}`)
    } catch {}
    if (kind !== 'anon_inode:[eventfd]' || !native.isNonBlocking(fd)) {
      if (kind !== '') native.closeFd(fd)
      throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', `Doorbell.fromFd: fd ${fd} is not a non-blocking eventfd (${kind || 'not open'})`)
    }
    native.trackFd(fd)
    return new Doorbell(fd)
  }

  /** The eventfd, to pass to another process (the kernel duplicates it). */
  get fd(): number {
    return this.#fd
  }

  /** Rings it. Never blocks; a counter that is already set stays set. No-op once closed. */
  ring(): void {
    if (this.#closed) return
    const errno = native.eventFdSignal(this.#fd)
    // EAGAIN: the counter is at its maximum, so it is rung already.
    if (errno !== 0 && errno !== native.EAGAIN) throw FdpassError.fromErrno(errno, 'write', 'Doorbell.ring')
  }

  /** Resets the counter without waiting; true if it had been rung. */
  drain(): boolean {
    return !this.#closed && native.eventFdDrain(this.#fd)
  }

  /**
   * Calls `onRing` from the event loop each time the doorbell was rung (the counter is reset
   * first). Replaces an earlier callback. The watch keeps the process alive unless `ref(false)`.
   */
  watch(onRing: () => void): void {
    if (this.#closed) return
    this.#onRing = onRing
    // One poll handle for the doorbell's life, started and stopped: libuv closes a handle
    // asynchronously, and a second handle on the same fd before that is not allowed.
    this.#readiness ??= new Readiness(this.#fd, () => {
      native.eventFdDrain(this.#fd)
      this.#onRing?.()
    })
    this.#readiness.ref(this.#ref)
    this.#readiness.want(true, false)
  }

  /** Stops calling back (the fd stays open; rings while unwatched are seen at the next watch). */
  unwatch(): void {
    this.#onRing = undefined
    this.#readiness?.want(false, false)
  }

  /** Whether a watch keeps the event loop alive. */
  ref(on: boolean): void {
    this.#ref = on
    this.#readiness?.ref(on)
  }

  /** Stops watching and closes the fd. Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    // The poll handle must stop watching the fd number before the kernel can reuse it.
    this.#onRing = undefined
    this.#readiness?.close()
    this.#readiness = undefined
    native.closeFd(this.#fd)
  }

  [Symbol.dispose](): void {
    this.close()
  }
}
