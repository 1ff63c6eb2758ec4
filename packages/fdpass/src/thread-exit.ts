import { FdpassError } from './errors.js'
import * as native from './native.js'

function checkFd(fd: unknown, what: string): asserts fd is number {
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', `${what}: ${String(fd)} is not a file descriptor`)
  }
}

/**
 * Closes `fd` when the calling thread's Node environment ends: when a worker thread exits,
 * crashes with an uncaught error, calls `process.exit()` or is `terminate()`d (or, on the main
 * thread, at process exit). fds opened through FFI belong to the process, not to the thread,
 * so without this a dead worker's sockets and files stay open. Every fd @ipc-pubsub/fdpass and
 * @ipc-pubsub/shm open is registered this way already; use this for fds you own, e.g. received
 * ones you keep.
 *
 * Idempotent (one registration per fd per thread, shared by every copy of these packages).
 * **Call `cancelCloseFdOnThreadExit(fd)` before you close `fd` yourself**: otherwise the fd
 * number, once reused by another open, would be closed under its new owner when the thread
 * ends. Throws ERR_FDPASS_INVALID_ARGUMENT for a non-fd and ERR_FDPASS_EBADF for an fd that is
 * not open. Does nothing on a Node build that does not export the hooks it relies on
 * (`node::AddEnvironmentCleanupHook`, see README).
 */
export function closeFdOnThreadExit(fd: number): void {
  checkFd(fd, 'closeFdOnThreadExit')
  if (!native.fdIsOpen(fd)) {
    throw FdpassError.fromErrno(native.EBADF, 'fcntl', `closeFdOnThreadExit(${fd})`)
  }
  native.trackFd(fd)
}

/**
 * Undoes `closeFdOnThreadExit(fd)` in the calling thread: call it right before closing `fd`
 * yourself, or when handing the fd's ownership to code that does not know about it.
 * Idempotent: a fd that is not registered is left alone.
 */
export function cancelCloseFdOnThreadExit(fd: number): void {
  checkFd(fd, 'cancelCloseFdOnThreadExit')
  native.untrackFd(fd)
}
