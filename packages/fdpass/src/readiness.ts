import { type PollEvents, type PollHandle, pollStart } from './native.js'

/** What a readiness wake-up reports. `error` is set when libuv saw EPOLLERR (status < 0). */
export interface ReadyEvents {
  readable: boolean
  writable: boolean
  disconnect: boolean
  error: boolean
}

/**
 * Readiness of one fd from Node's main libuv loop (a uv_poll_t through koffi), not from a
 * blocked threadpool call, a worker or a timer. Level-triggered: while the fd stays ready and
 * the interest stays set, the callback runs again on each loop turn, so callers drop interest
 * they cannot serve (a paused reader, an empty write queue).
 *
 * This is the only place that knows how koffi exposes polling: swapping the mechanism means
 * rewriting this class and native.pollStart, nothing else.
 *
 * Invariant: `close()` is called before the fd is closed (libuv must stop watching an fd
 * number before the kernel can hand that number to another file).
 */
export class Readiness {
  readonly #fd: number
  readonly #onReady: (events: ReadyEvents) => void
  #handle: PollHandle | undefined
  #want: PollEvents = { readable: false, writable: false, disconnect: false }
  #active = false
  #closed = false
  #ref = true

  constructor(fd: number, onReady: (events: ReadyEvents) => void) {
    this.#fd = fd
    this.#onReady = onReady
  }

  /** Sets the interest; restarts the libuv watcher only when it changes. */
  want(readable: boolean, writable: boolean, disconnect = false): void {
    if (this.#closed) return
    const w = this.#want
    if (this.#active && w.readable === readable && w.writable === writable && w.disconnect === disconnect) return
    this.#want = { readable, writable, disconnect }
    this.#apply()
  }

  /** Whether this watcher keeps the event loop (and so the process) alive. Default true. */
  ref(on: boolean): void {
    this.#ref = on
    if (on) this.#handle?.ref()
    else this.#handle?.unref()
  }

  /** Stops watching and releases the handle. Idempotent. Must precede close(fd). */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#active = false
    this.#handle?.close()
    this.#handle = undefined
  }

  #apply(): void {
    const w = this.#want
    if (!w.readable && !w.writable && !w.disconnect) {
      if (this.#active) this.#handle?.stop()
      this.#active = false
      return
    }
    if (this.#handle === undefined) {
      this.#handle = pollStart(this.#fd, w, this.#callback)
      if (!this.#ref) this.#handle.unref()
    } else {
      this.#handle.start(w, this.#callback)
    }
    this.#active = true
  }

  // Runs inside a native libuv callback. An exception thrown here (say, by a 'message'
  // listener) would stay pending inside the addon and wedge later calls, so it is rethrown
  // on the next tick, where Node reports it like any other uncaught exception.
  readonly #callback = (status: number, events: PollEvents): void => {
    try {
      this.#dispatch(status, events)
    } catch (error) {
      process.nextTick(() => {
        throw error
      })
    }
  }

  #dispatch(status: number, events: PollEvents): void {
    if (this.#closed) return
    if (status < 0) {
      // libuv reports EPOLLERR as UV_EBADF and stops the handle: the real error is the
      // socket's pending one, which the owner reads (recvmsg or SO_ERROR). Re-arm afterwards.
      this.#active = false
      this.#onReady({ readable: true, writable: true, disconnect: false, error: true })
      if (!this.#closed && !this.#active) this.#apply()
      return
    }
    this.#onReady({
      readable: events.readable,
      writable: events.writable,
      disconnect: events.disconnect,
      error: false,
    })
  }
}
