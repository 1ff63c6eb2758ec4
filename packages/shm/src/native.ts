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

export function closeFd(fd: number): void {
  if ((close(fd) as number) < 0) fail('close')
}

export function shmOpen(name: string, oflag: number, mode: number): number {
  const fd = shm_open(name, oflag, mode) as number
  if (fd < 0) fail('shm_open')
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
