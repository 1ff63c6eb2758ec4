// The one file of @ipc-pubsub/topology that talks to libc through koffi: open(2), flock(2) and
// close(2) for the directory-mode election lock, prctl(2) to name the hub thread, pidfd_open(2)
// and a libuv poll handle for the standby hub thread to see the hub's process die. Everything
// else in this package is plain TypeScript.
import koffi from 'koffi'

const libc = koffi.load('libc.so.6')

// flock(2) operations
export const LOCK_EX = 2 // exclusive lock
export const LOCK_NB = 4 // fail with EWOULDBLOCK instead of waiting
export const LOCK_UN = 8 // release

// open(2) flags
export const O_RDWR = 0o2 // read and write
export const O_CREAT = 0o100 // create if missing
export const O_CLOEXEC = 0o2000000 // a spawned child never inherits the lock

// prctl(2) options
export const PR_SET_NAME = 15 // name the calling thread (at most 15 bytes, then NUL)

// syscall numbers
export const SYS_pidfd_open = 434 // pidfd_open(pid, flags): the same number on x86_64 and aarch64

// errno values tested by number
export const EWOULDBLOCK = 11 // the lock is held by another open file description (== EAGAIN)
export const EINTR = 4 // interrupted by a signal: retry

const flockFn = libc.func('int flock(int fd, int operation)')
// open is variadic in C (the mode is the optional third argument).
const openFn = libc.func('int open(const char *path, int flags, ...)')
const closeFn = libc.func('int close(int fd)')
// prctl is variadic in C: PR_SET_NAME takes a char *.
const prctlFn = libc.func('int prctl(int option, ...)')
const syscallFn = libc.func('long syscall(long number, ...)')

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

/**
 * Opens (creating, mode 0600 before the umask) the lock file. Through libc, not fs.openSync:
 * in a worker thread Node tracks the fds fs.openSync opens and closes them after the thread's
 * cleanup hooks have run, so a lock fd also registered with closeFdOnThreadExit would be
 * closed twice (the second time maybe under another thread's new file).
 */
export function openLockFile(path: string): number {
  for (;;) {
    const fd = openFn(path, O_RDWR | O_CREAT | O_CLOEXEC, 'uint32_t', 0o600) as number
    if (fd >= 0) return fd
    const errno = koffi.errno()
    if (errno === EINTR) continue
    throw new NativeError('open', errno)
  }
}

/** close(2). EINTR is not retried: on Linux the fd is closed anyway. */
export function closeFd(fd: number): void {
  closeFn(fd)
}

/**
 * Names the calling OS thread (what `top -H`, `ps -L` and /proc/<pid>/task/<tid>/comm show),
 * truncated to 15 bytes. Best effort: a failure changes nothing else.
 */
export function setThreadName(name: string): void {
  prctlFn(PR_SET_NAME, 'str', name.slice(0, 15))
}

/**
 * A pidfd for `pid` (pid_open(2), close-on-exec): it becomes readable when that process has
 * exited, after the kernel closed its files (so a hub name it held is free by then).
 */
export function pidfdOpen(pid: number): number {
  const fd = Number(syscallFn(SYS_pidfd_open, 'int', pid, 'unsigned int', 0))
  if (fd < 0) throw new NativeError('pidfd_open', koffi.errno())
  return fd
}

/** A poll handle on this thread's libuv loop; close() it before closing the fd. */
export interface Watch {
  close(): void
}

/**
 * Calls `onReadable` (again while it stays readable: level-triggered) when `fd` is readable,
 * from this thread's event loop. koffi.node.poll, undocumented in koffi 3.3.4: its callback
 * gets (status, events). The watch does not keep the thread alive (unref'd).
 */
export function watchReadable(fd: number, onReadable: () => void): Watch {
  const handle = koffi.node.poll(fd, { readable: true }, () => onReadable())
  if (handle === null) throw new NativeError('uv_poll_start', 0)
  handle.unref()
  return { close: () => handle.close() }
}
