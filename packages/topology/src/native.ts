// The one file of @ipc-pubsub/topology that talks to libc through koffi: flock(2) for the
// directory-mode election lock. Everything else in this package is plain TypeScript.
import koffi from 'koffi'

const libc = koffi.load('libc.so.6')

// flock(2) operations
export const LOCK_EX = 2 // exclusive lock
export const LOCK_NB = 4 // fail with EWOULDBLOCK instead of waiting
export const LOCK_UN = 8 // release

// errno values tested by number
export const EWOULDBLOCK = 11 // the lock is held by another open file description (== EAGAIN)
export const EINTR = 4 // interrupted by a signal: retry

const flockFn = libc.func('int flock(int fd, int operation)')

/** A failed syscall: `errno` is positive, as the kernel returns it. */
export class NativeError extends Error {
  readonly errno: number
  readonly syscall: string
  constructor(syscall: string, errno: number) {
    super(`${syscall} failed with errno ${errno}`)
    this.name = 'NativeError'
    this.syscall = syscall
    this.errno = errno
  }
}

/**
 * Tries to take an exclusive flock on `fd` without waiting. Returns false when another open
 * file description holds it. The kernel drops the lock when the last fd of this open file
 * description closes, which includes the holder's death: no stale lock survives a crash.
 */
export function tryLockExclusive(fd: number): boolean {
  for (;;) {
    if (flockFn(fd, LOCK_EX | LOCK_NB) === 0) return true
    const errno = koffi.errno()
    if (errno === EINTR) continue
    if (errno === EWOULDBLOCK) return false
    throw new NativeError('flock', errno)
  }
}
