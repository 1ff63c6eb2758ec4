/** Stable codes of @ipc-pubsub/pubsub errors. Match on `error.code`. */
export type PubSubErrorCode =
  /** A bad argument, reported before anything happens. */
  | 'ERR_PUBSUB_INVALID_ARGUMENT'
  /** The node, publisher or subscription is closed and cannot take this call. */
  | 'ERR_PUBSUB_CLOSED'
  /** An AbortSignal ended the wait (the error's `name` is 'AbortError'). */
  | 'ERR_PUBSUB_ABORTED'
  /** A 'fail'-policy subscription missed a message (its queue was full): it is closed. */
  | 'ERR_PUBSUB_OVERFLOW'
  /** A peer broke the data-path protocol (docs/PROTOCOL.md); its link was closed. */
  | 'ERR_PUBSUB_PROTOCOL'
  /** The peer speaks another data-path protocol version; its link was closed. */
  | 'ERR_PUBSUB_VERSION'
  /**
   * A link could not be made or accepted, or broke below the data protocol (`cause`: the
   * FdpassError, e.g. ERR_FDPASS_EMFILE when this process ran out of fds), or close() cut
   * links at its deadline. Links are retried while they are wanted.
   */
  | 'ERR_PUBSUB_LINK'
  /** The payload is too large for the transport. */
  | 'ERR_PUBSUB_TOO_LARGE'

const marker = Symbol.for('@ipc-pubsub/pubsub.PubSubError')

/** Every error @ipc-pubsub/pubsub throws, rejects with or emits. `cause` is set when wrapping. */
export class PubSubError extends Error {
  readonly code: PubSubErrorCode

  constructor(code: PubSubErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    // Waits that an AbortSignal ends reject with name 'AbortError', as Node's own APIs do.
    this.name = code === 'ERR_PUBSUB_ABORTED' ? 'AbortError' : 'PubSubError'
    this.code = code
    Object.defineProperty(this, marker, { value: true })
  }

  /** True for a PubSubError from any installed copy of this package. */
  static isInstance(value: unknown): value is PubSubError {
    return typeof value === 'object' && value !== null && marker in value
  }
}

/**
 * @internal Runs a user callback (an event listener) where a throw must not unwind into our
 * own bookkeeping or a link's frame handler: it is rethrown on the next tick, where Node
 * reports it as it reports any throwing listener.
 */
export function guarded(callback: () => void): void {
  try {
    callback()
  } catch (error) {
    process.nextTick(() => {
      throw error
    })
  }
}

/** @internal The rejection of a wait that `signal` aborted. */
export function abortError(what: string, signal: AbortSignal): PubSubError {
  return new PubSubError('ERR_PUBSUB_ABORTED', `${what} was aborted`, { cause: signal.reason })
}

/** @internal Checks an optional AbortSignal argument. */
export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'signal must be an AbortSignal')
  }
  return signal
}

/**
 * @internal Resolves when `ready()` holds, re-checked each time `subscribe` calls back;
 * rejects with an AbortError when `signal` aborts, or with `closedError()` once that
 * returns an error.
 */
export function waitUntil(
  what: string,
  ready: () => boolean,
  closedError: () => Error | undefined,
  subscribe: (check: () => void) => () => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(what, signal))
  const closed = closedError()
  if (closed) return Promise.reject(closed)
  if (ready()) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      cleanup()
      reject(abortError(what, signal as AbortSignal))
    }
    const check = () => {
      const error = closedError()
      if (error) {
        cleanup()
        reject(error)
      } else if (ready()) {
        cleanup()
        resolve()
      }
    }
    const unsubscribe = subscribe(check)
    function cleanup() {
      unsubscribe()
      signal?.removeEventListener('abort', onAbort)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
