// The one file of @ipc-pubsub/shm that talks to libc through koffi. Everything above it is
// plain TypeScript. Numbers are Linux x86_64 / aarch64 (asm-generic where they agree) values.
import koffi from 'koffi'

const libc = koffi.load('libc.so.6')

// memfd_create(2) flags
export const MFD_CLOEXEC = 0x0001 // close the fd on exec
export const MFD_ALLOW_SEALING = 0x0002 // allow F_ADD_SEALS (otherwise F_SEAL_SEAL is set)
export const MFD_NOEXEC_SEAL = 0x0008 // kernel >= 6.3: not executable, and that is sealed

// mmap(2) protection and flags
export const PROT_READ = 0x1
export const PROT_WRITE = 0x2
export const MAP_SHARED = 0x01 // writes reach the file and every other mapping
export const MAP_PRIVATE = 0x02 // copy-on-write: our writes stay ours
export const MAP_FIXED = 0x10 // replace whatever is mapped at addr (atomically)
export const MAP_ANONYMOUS = 0x20 // no file behind it
export const MAP_NORESERVE = 0x4000 // no swap/commit reservation for private pages
export const MAP_POPULATE = 0x8000 // pre-fault the page tables at mmap time

// madvise(2)
export const MADV_POPULATE_READ = 22 // kernel >= 5.14: pre-fault readable

// fcntl(2) sealing commands and seal bits
export const F_ADD_SEALS = 1033 // F_LINUX_SPECIFIC_BASE + 9
export const F_GET_SEALS = 1034 // F_LINUX_SPECIFIC_BASE + 10
export const F_SEAL_SEAL = 0x0001 // no more seals may be added
export const F_SEAL_SHRINK = 0x0002 // size may not shrink
export const F_SEAL_GROW = 0x0004 // size may not grow
export const F_SEAL_WRITE = 0x0008 // contents may not change (needs no writable shared mapping)
export const F_SEAL_FUTURE_WRITE = 0x0010 // no new writable mappings or write(); existing ones keep writing
export const F_SEAL_EXEC = 0x0020 // exec bits may not change

// open(2) flags as shm_open(3) takes them
export const O_RDONLY = 0o0
export const O_RDWR = 0o2
export const O_CREAT = 0o100
export const O_EXCL = 0o200

const memfd_create = libc.func('int memfd_create(const char *name, unsigned int flags)')
const ftruncate = libc.func('int ftruncate(int fd, int64_t length)')
// Addresses travel as intptr_t (a JS number): user-space addresses are below 2^47, so they
// are exact, and MAP_FAILED comes back as -1 instead of a BigInt compare.
const mmap = libc.func('intptr_t mmap(intptr_t addr, size_t length, int prot, int flags, int fd, int64_t offset)')
const munmap = libc.func('int munmap(intptr_t addr, size_t length)')
const madvise = libc.func('int madvise(intptr_t addr, size_t length, int advice)')
const fcntl = libc.func('int fcntl(int fd, int cmd, ...)')
const close = libc.func('int close(int fd)')
const shm_open = libc.func('int shm_open(const char *name, int oflag, uint32_t mode)')
const shm_unlink = libc.func('int shm_unlink(const char *name)')

// --- fds that close with their thread --------------------------------------------------
//
// fds opened through koffi belong to the process, not to the Node environment (main thread or
// worker) that opened them: a worker that is terminate()d or crashes would leave its segments'
// fds open. Node runs an environment's cleanup hooks when it ends, however it ends; a hook is a
// C function called with one pointer, and libc's close(int) called with the fd as that pointer
// closes it (x86_64 and aarch64 pass the first argument in one register). So every fd a
// Segment holds is registered as a hook (close, fd) and unregistered before we close it.
// @ipc-pubsub/fdpass does the same with the same per-thread set (this package does not
// depend on it; the two share the set through a global symbol).
//
// Invariants, all enforced through THREAD_FDS:
// - Node aborts the process (CHECK) when one environment registers the same (fn, arg) pair
//   twice: a fd is registered only if absent from this thread's set.
// - A hook must never outlive its fd (the number is reused by the next open, and the hook
//   would close someone else's file): unregister first, then close.
// - The set is per thread (globalThis is) and shared by every copy of @ipc-pubsub/shm and
//   @ipc-pubsub/fdpass loaded in that thread. Both resolve the same `close` address.
// Mappings cannot be released this way (munmap takes two arguments): see README, Threads.
// If the node binary does not export these C++ symbols (another build of Node), nothing is
// tracked and fds behave as before: closed by our code, or at process exit.

const THREAD_FDS = Symbol.for('ipc-pubsub.thread-fds') // per-thread Set<number> of registered fds
const ADD_HOOK = '_ZN4node25AddEnvironmentCleanupHookEPN2v87IsolateEPFvPvES3_' // node::AddEnvironmentCleanupHook(v8::Isolate*, void(*)(void*), void*)
const REMOVE_HOOK = '_ZN4node28RemoveEnvironmentCleanupHookEPN2v87IsolateEPFvPvES3_' // node::RemoveEnvironmentCleanupHook(same)
const ISOLATE_GET_CURRENT = '_ZN2v87Isolate10GetCurrentEv' // v8::Isolate::GetCurrent()

interface CleanupHooks {
  add(fd: number): void
  remove(fd: number): void
}

let cleanupHooks: CleanupHooks | null | undefined // undefined: not resolved yet; null: unavailable

function resolveCleanupHooks(): CleanupHooks | null {
  try {
    const node = koffi.load(null as unknown as string) // the running executable's own symbols
    const getCurrent = node.func(`void *${ISOLATE_GET_CURRENT}()`)
    const addHook = node.func(`void ${ADD_HOOK}(void *isolate, void *fn, void *arg)`)
    const removeHook = node.func(`void ${REMOVE_HOOK}(void *isolate, void *fn, void *arg)`)
    const dlsym = libc.func('void *dlsym(void *handle, const char *symbol)')
    const closeAddress = dlsym(null, 'close')
    if (!closeAddress) return null
    return {
      add: (fd) => addHook(getCurrent(), closeAddress, BigInt(fd)),
      remove: (fd) => removeHook(getCurrent(), closeAddress, BigInt(fd)),
    }
  } catch {
    return null
  }
}

function threadFds(): Set<number> {
  const holder = globalThis as { [THREAD_FDS]?: Set<number> }
  let set = holder[THREAD_FDS]
  if (set === undefined) {
    set = new Set()
    holder[THREAD_FDS] = set
  }
  return set
}

/** True when this Node build lets fds be closed at thread exit. */
export function threadExitTrackingAvailable(): boolean {
  if (cleanupHooks === undefined) cleanupHooks = resolveCleanupHooks()
  return cleanupHooks !== null
}

/** Registers fd to be closed when this thread's Node environment ends. Idempotent. */
export function trackFd(fd: number): void {
  if (!threadExitTrackingAvailable()) return
  const set = threadFds()
  if (set.has(fd)) return
  set.add(fd)
  cleanupHooks!.add(fd)
}

/**
 * Undoes trackFd(fd); call before closing fd. Idempotent. Looks at the shared set, not at
 * what this copy registered: another copy (or the other package) may have registered fd.
 */
export function untrackFd(fd: number): void {
  const set = (globalThis as { [THREAD_FDS]?: Set<number> })[THREAD_FDS]
  if (set === undefined || !set.delete(fd)) return
  if (threadExitTrackingAvailable()) cleanupHooks!.remove(fd)
}

/** A failed call: the syscall's name and the positive errno read right after it. */
export class NativeError extends Error {
  constructor(
    readonly syscall: string,
    readonly errno: number,
  ) {
    super(`${syscall} failed with errno ${errno}`)
  }
}

// koffi.errno() is the thread's live errno: it must be read before any other call.
function fail(syscall: string): never {
  throw new NativeError(syscall, koffi.errno())
}

export function memfdCreate(name: string, flags: number): number {
  const fd = memfd_create(name, flags) as number
  if (fd < 0) fail('memfd_create')
  trackFd(fd)
  return fd
}

export function ftruncateFd(fd: number, length: number): void {
  if ((ftruncate(fd, length) as number) < 0) fail('ftruncate')
}

export function mmapFd(length: number, prot: number, flags: number, fd: number): number {
  const addr = mmap(0, length, prot, flags, fd, 0) as number
  if (addr === -1) fail('mmap')
  return addr
}

/**
 * Replaces [addr, addr+length) with private anonymous zero pages (MAP_FIXED is atomic: there
 * is no instant where the range is unmapped and could be handed to another mmap).
 */
export function mmapTombstone(addr: number, length: number): void {
  const got = mmap(
    addr,
    length,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
    -1,
    0,
  ) as number
  if (got === -1) fail('mmap')
}

export function munmapRange(addr: number, length: number): void {
  if ((munmap(addr, length) as number) < 0) fail('munmap')
}

export function madviseRange(addr: number, length: number, advice: number): void {
  if ((madvise(addr, length, advice) as number) < 0) fail('madvise')
}

export function addSeals(fd: number, seals: number): void {
  if ((fcntl(fd, F_ADD_SEALS, 'int', seals) as number) < 0) fail('fcntl')
}

/** The fd's seal bits; a file that cannot carry seals (not a memfd) reports none. */
export function getSeals(fd: number): number {
  const seals = fcntl(fd, F_GET_SEALS) as number
  if (seals < 0) {
    const errno = koffi.errno()
    if (errno === EINVAL) return 0
    throw new NativeError('fcntl', errno)
  }
  return seals
}

/** Closes fd, after removing its thread-exit hook if it has one. */
export function closeFd(fd: number): void {
  untrackFd(fd)
  if ((close(fd) as number) < 0) fail('close')
}

export function shmOpen(name: string, oflag: number, mode: number): number {
  const fd = shm_open(name, oflag, mode) as number
  if (fd < 0) fail('shm_open')
  trackFd(fd)
  return fd
}

export function shmUnlink(name: string): void {
  if ((shm_unlink(name) as number) < 0) fail('shm_unlink')
}

/** A zero-copy ArrayBuffer over [addr, addr+length). One per mapping: each call costs ~1-2 µs. */
export function viewOf(addr: number, length: number): ArrayBuffer {
  return koffi.view(addr, length) as ArrayBuffer
}

export const EINVAL = 22
