import { constants } from 'node:os'
import { NativeError } from './native.js'

/** Stable codes of errors that are not a failed syscall. Match on `error.code`. */
export type ShmErrorCode =
  | 'ERR_SHM_INVALID_SIZE'
  | 'ERR_SHM_INVALID_FD'
  | 'ERR_SHM_INVALID_NAME'
  | 'ERR_SHM_INVALID_ARGUMENT'
  | 'ERR_SHM_UNSEALED'
  | 'ERR_SHM_CLOSED'
  | 'ERR_SHM_MISALIGNED'
  | 'ERR_SHM_OUT_OF_RANGE'
  // A failed syscall: `ERR_SHM_` + the errno's name, e.g. ERR_SHM_EEXIST, ERR_SHM_ENOENT.
  | `ERR_SHM_E${string}`

const marker = Symbol.for('@ipc-pubsub/shm.ShmError')

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [value, name]),
)

/**
 * Every error @ipc-pubsub/shm throws. `code` is stable; `errno` (negative, as in Node's
 * SystemError) and `syscall` are set when a system call failed.
 */
export class ShmError extends Error {
  readonly code: ShmErrorCode
  readonly errno: number | undefined
  readonly syscall: string | undefined

  constructor(
    code: ShmErrorCode,
    message: string,
    options: { errno?: number; syscall?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'ShmError'
    this.code = code
    this.errno = options.errno
    this.syscall = options.syscall
    Object.defineProperty(this, marker, { value: true })
  }

  /** True for a ShmError from any installed copy of this package. */
  static isInstance(value: unknown): value is ShmError {
    return typeof value === 'object' && value !== null && marker in value
  }

  /** @internal Turns a failed syscall into an errno-coded ShmError. */
  static fromNative(error: unknown, context: string): ShmError {
    if (!(error instanceof NativeError)) throw error
    const name = errnoNames.get(error.errno) ?? `ERRNO${error.errno}`
    return new ShmError(
      `ERR_SHM_${name}` as ShmErrorCode,
      `${context}: ${error.syscall} failed with ${name}`,
      { errno: -error.errno, syscall: error.syscall },
    )
  }
}
