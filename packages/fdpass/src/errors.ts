import { constants } from 'node:os'
import { NativeError } from './native.js'

/** Stable codes of errors that are not a failed syscall. Match on `error.code`. */
export type FdpassErrorCode =
  /** A bad argument, reported before any syscall. */
  | 'ERR_FDPASS_INVALID_ARGUMENT'
  /** An address that is neither `@name` nor a usable filesystem path. */
  | 'ERR_FDPASS_INVALID_ADDRESS'
  /** The server's `authorize` refused the peer, or the client's refused the server. */
  | 'ERR_FDPASS_UNAUTHORIZED'
  /** A frame larger than `maxFrameSize` (sent by us: refused; received: channel closed). */
  | 'ERR_FDPASS_FRAME_TOO_LARGE'
  /** A frame with more fds than `maxFdsPerFrame`. */
  | 'ERR_FDPASS_TOO_MANY_FDS'
  /**
   * The kernel truncated a received frame's control data (MSG_CTRUNC) because the peer sent
   * more fds than the receive buffer holds: fds were lost. (When this process ran out of fds
   * instead, the channel closes with ERR_FDPASS_EMFILE.)
   */
  | 'ERR_FDPASS_TRUNCATED'
  /** The peer sent something no fdpass endpoint sends (an empty frame, a bad handshake). */
  | 'ERR_FDPASS_PROTOCOL'
  /** The channel or server is closed (or closing) and cannot take this call. */
  | 'ERR_FDPASS_CLOSED'
  /** The peer closed its end (or its process exited or was killed). */
  | 'ERR_FDPASS_PEER_CLOSED'
  /** `send` past `maxQueuedFrames` / `maxQueuedBytes`. */
  | 'ERR_FDPASS_QUEUE_FULL'
  /** An AbortSignal ended the wait. */
  | 'ERR_FDPASS_ABORTED'
  // A failed syscall: `ERR_FDPASS_` + the errno's name, e.g. ERR_FDPASS_EADDRINUSE.
  | `ERR_FDPASS_E${string}`

const marker = Symbol.for('@ipc-pubsub/fdpass.FdpassError')

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [value, name]),
)

/** The errno's name (`EAGAIN`), or `ERRNO<n>` for one Node does not name. */
export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `ERRNO${Math.abs(errno)}`
}

/**
 * Every error @ipc-pubsub/fdpass throws, rejects with or closes a channel with. `code` is
 * stable; `errno` (negative, as in Node's SystemError) and `syscall` are set when a system
 * call failed; `cause` is set when another error is wrapped.
 */
export class FdpassError extends Error {
  readonly code: FdpassErrorCode
  readonly errno: number | undefined
  readonly syscall: string | undefined

  constructor(
    code: FdpassErrorCode,
    message: string,
    options: { errno?: number; syscall?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'FdpassError'
    this.code = code
    this.errno = options.errno
    this.syscall = options.syscall
    Object.defineProperty(this, marker, { value: true })
  }

  /** True for an FdpassError from any installed copy of this package. */
  static isInstance(value: unknown): value is FdpassError {
    return typeof value === 'object' && value !== null && marker in value
  }

  /** @internal An errno-coded error; `errno` may be given positive or negative. */
  static fromErrno(errno: number, syscall: string, context: string): FdpassError {
    const name = errnoName(errno)
    return new FdpassError(`ERR_FDPASS_${name}` as FdpassErrorCode, `${context}: ${syscall} failed with ${name}`, {
      errno: -Math.abs(errno),
      syscall,
    })
  }

  /** @internal Turns a failed syscall into an errno-coded FdpassError; rethrows anything else. */
  static fromNative(error: unknown, context: string): FdpassError {
    if (!(error instanceof NativeError)) throw error
    return FdpassError.fromErrno(error.errno, error.syscall, context)
  }
}
