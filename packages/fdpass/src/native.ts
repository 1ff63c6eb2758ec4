// The one file of @ipc-pubsub/fdpass that talks to libc and libuv through koffi. Everything
// above it is plain TypeScript. Numbers and layouts are Linux LP64 (x86_64, aarch64) values.
//
// Hot-path calls (sendmsg/recvmsg) take the address of one preallocated block that holds the
// msghdr, the iovec and the control buffer, so no argument is marshalled per frame; failures
// come back as a negative errno instead of an exception, because EAGAIN is the common case.
import koffi from 'koffi'

const libc = koffi.load('libc.so.6')

// socket(2)
export const AF_UNIX = 1 // address family of Unix domain sockets
export const SOCK_SEQPACKET = 5 // connected, reliable, message boundaries kept
export const SOCK_NONBLOCK = 0o4000 // socket()/accept4() flag: O_NONBLOCK on the new fd
export const SOCK_CLOEXEC = 0o2000000 // socket()/accept4() flag: O_CLOEXEC on the new fd

// sendmsg(2) / recvmsg(2) flags
export const MSG_CTRUNC = 0x8 // msg_flags: control data was cut short (fds dropped by the kernel)
export const MSG_TRUNC = 0x20 // msg_flags: the frame was longer than the buffer
export const MSG_DONTWAIT = 0x40 // this call only: do not block
export const MSG_NOSIGNAL = 0x4000 // EPIPE instead of SIGPIPE when the peer is gone
export const MSG_CMSG_CLOEXEC = 0x40000000 // received fds get O_CLOEXEC atomically

// getsockopt(2) / control messages
export const SOL_SOCKET = 1 // socket-level option / cmsg level
export const SO_ERROR = 4 // pending socket error (reading it clears it)
export const SO_PEERCRED = 17 // struct ucred of the peer, taken at connect()/listen() time
export const SCM_RIGHTS = 1 // cmsg type: an array of int fds

// fcntl(2)
export const F_DUPFD_CLOEXEC = 1030 // dup to the lowest free fd >= arg, with O_CLOEXEC
export const F_GETFD = 1 // read the fd flags: fails with EBADF when the fd is not open

// poll(2)
export const POLLRDHUP = 0x2000 // the peer closed or shut down writing

// errno values this package tests for by number (the rest are named via os.constants.errno)
export const EAGAIN = 11 // would block (also: backlog full on a Unix connect)
export const EINTR = 4 // interrupted by a signal: retry
export const EBADF = 9 // not an open fd
export const ECONNABORTED = 103 // accept4: the connection died in the backlog
export const EMFILE = 24 // process fd table full
export const ENFILE = 23 // system fd table full
export const ENOBUFS = 105 // out of socket buffer memory: retry when writable
export const ECONNRESET = 104 // the peer closed with frames unread; reported once, before its frames

// struct sockaddr_un: sa_family_t (u16) then char sun_path[108]
export const SUN_PATH_OFFSET = 2 // sun_path follows the 2-byte family
export const SUN_PATH_SIZE = 108 // bytes in sun_path, NUL terminator included

// struct msghdr (56 bytes on LP64), offsets in bytes
const MSGHDR_SIZE = 56 // sizeof(struct msghdr)
const MSG_IOV = 16 // struct iovec *msg_iov
const MSG_IOVLEN = 24 // size_t msg_iovlen
const MSG_CONTROL = 32 // void *msg_control
const MSG_CONTROLLEN = 40 // size_t msg_controllen (the kernel writes back the length used)
const MSG_FLAGS = 48 // int msg_flags (written by recvmsg)
// struct iovec (16 bytes): void *iov_base at 0, size_t iov_len at 8
const IOVEC_SIZE = 16 // sizeof(struct iovec)
// struct cmsghdr (16 bytes): size_t cmsg_len at 0, int cmsg_level at 8, int cmsg_type at 12
const CMSGHDR_SIZE = 16 // sizeof(struct cmsghdr) == CMSG_LEN(0) == CMSG_DATA offset
/** The kernel's limit of fds in one SCM_RIGHTS message (SCM_MAX_FD). */
export const SCM_MAX_FD = 253
/** The largest frame this package moves: under net.core.wmem_default (212992) minus overhead. */
export const MAX_FRAME_SIZE = 128 * 1024

/** CMSG_SPACE(n): a cmsghdr plus n bytes of data, padded to 8 bytes. */
export function cmsgSpace(dataBytes: number): number {
  return CMSGHDR_SIZE + ((dataBytes + 7) & ~7)
}

/** How many fds a control buffer of CMSG_SPACE(4 * wanted) bytes can hold. */
export function fdCapacity(wanted: number): number {
  return (cmsgSpace(4 * wanted) - CMSGHDR_SIZE) >> 2
}

const CONTROL_MAX = cmsgSpace(4 * (SCM_MAX_FD + 1)) // room for the largest fd list a peer can send, plus one

const socket = libc.func('int socket(int domain, int type, int protocol)')
const bind = libc.func('int bind(int fd, const void *addr, uint32_t addrlen)')
const listen = libc.func('int listen(int fd, int backlog)')
const accept4 = libc.func('int accept4(int fd, void *addr, void *addrlen, int flags)')
const connect = libc.func('int connect(int fd, const void *addr, uint32_t addrlen)')
// The msghdr travels as an address (intptr_t): it lives in a block that never moves.
const sendmsg = libc.func('intptr_t sendmsg(int fd, intptr_t msg, int flags)')
const recvmsg = libc.func('intptr_t recvmsg(int fd, intptr_t msg, int flags)')
const getsockopt = libc.func('int getsockopt(int fd, int level, int name, void *value, void *len)')
const fcntl = libc.func('int fcntl(int fd, int cmd, ...)')
const close = libc.func('int close(int fd)')
const poll = libc.func('int poll(void *fds, uint64_t nfds, int timeout)')

// --- fds that close with their thread --------------------------------------------------
//
// fds opened through koffi belong to the process, not to the Node environment (main thread or
// worker) that opened them: a worker that is terminate()d or crashes would leave them open (a
// listening socket keeps its name bound, and nobody answers). Node runs an environment's
// cleanup hooks when that environment ends, however it ends, and a hook is a C function called
// with one pointer. libc's close(int) called with the fd as that pointer closes it (x86_64 and
// aarch64 pass the first argument in one register; the int is its low half). So every fd this
// package opens is registered as a hook (close, fd) and unregistered before we close it.
//
// Invariants, all enforced through THREAD_FDS:
// - Node aborts the process (CHECK) when one environment registers the same (fn, arg) pair
//   twice: a fd is registered only if absent from this thread's set.
// - A hook must never outlive its fd (the number is reused by the next open, and the hook
//   would close someone else's file): unregister first, then close.
// - The set is per thread (globalThis is) and shared by every copy of @ipc-pubsub/fdpass and
//   @ipc-pubsub/shm loaded in that thread, so two copies never register one fd twice. Both
//   resolve the same `close` address, so their pairs are identical.
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

/** True when this Node build lets fds be closed at thread exit (see closeFdOnThreadExit). */
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

export function socketSeqpacket(): number {
  const fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number
  if (fd < 0) fail('socket')
  trackFd(fd)
  return fd
}

export function bindFd(fd: number, addr: Buffer): void {
  if ((bind(fd, addr, addr.length) as number) < 0) fail('bind')
}

export function listenFd(fd: number, backlog: number): void {
  if ((listen(fd, backlog) as number) < 0) fail('listen')
}

/** Connects; on a Unix socket this completes at once or fails (EAGAIN: backlog full). */
export function connectFd(fd: number, addr: Buffer): void {
  if ((connect(fd, addr, addr.length) as number) < 0) fail('connect')
}

/**
 * accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC: the new fd (closed with this thread, see trackFd),
 * or -errno (EAGAIN when none waits).
 */
export function acceptFd(fd: number): number {
  const got = accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC) as number
  if (got < 0) return -koffi.errno()
  trackFd(got)
  return got
}

/** Duplicates fd (close-on-exec; closed with this thread, see trackFd), or returns -errno. */
export function dupFd(fd: number): number {
  const got = fcntl(fd, F_DUPFD_CLOEXEC, 'int', 0) as number
  if (got < 0) return -koffi.errno()
  trackFd(got)
  return got
}

/** True when fd is an open descriptor of this process. */
export function fdIsOpen(fd: number): boolean {
  return (fcntl(fd, F_GETFD) as number) >= 0
}

/**
 * Closes fd, after removing its thread-exit hook if it has one; errors are ignored (after
 * close(2) the fd is gone whatever it returns).
 */
export function closeFd(fd: number): void {
  untrackFd(fd)
  close(fd)
}

/** struct ucred { pid_t pid; uid_t uid; gid_t gid } */
export interface Ucred {
  pid: number
  uid: number
  gid: number
}

const optBuf = Buffer.alloc(16)
const optLen = Buffer.alloc(4)

export function peerCred(fd: number): Ucred {
  optLen.writeUInt32LE(12, 0) // sizeof(struct ucred)
  if ((getsockopt(fd, SOL_SOCKET, SO_PEERCRED, optBuf, optLen) as number) < 0) fail('getsockopt')
  return { pid: optBuf.readInt32LE(0), uid: optBuf.readUInt32LE(4), gid: optBuf.readUInt32LE(8) }
}

/** Reads and clears the socket's pending error (a positive errno, or 0). */
export function socketError(fd: number): number {
  optLen.writeUInt32LE(4, 0)
  if ((getsockopt(fd, SOL_SOCKET, SO_ERROR, optBuf, optLen) as number) < 0) return koffi.errno()
  return optBuf.readInt32LE(0)
}

const pollBuf = Buffer.alloc(8) // struct pollfd { int fd; short events; short revents }

/** True when the peer has closed or shut down its side (poll(2) with POLLRDHUP, no wait). */
export function peerHungUp(fd: number): boolean {
  pollBuf.writeInt32LE(fd, 0)
  pollBuf.writeInt16LE(POLLRDHUP, 4) // events
  pollBuf.writeInt16LE(0, 6) // revents
  const n = poll(pollBuf, 1, 0) as number
  return n > 0 && (pollBuf.readInt16LE(6) & POLLRDHUP) !== 0
}

// One message block: [msghdr | iovec | control | data]. A Buffer from allocUnsafeSlow owns its
// own off-heap backing store, which V8 never moves, so its address stays valid for the life
// of the process; the Uint32Array writes 64-bit fields as two halves (all values < 2^32).
class MessageBlock {
  readonly buf: Buffer
  readonly u32: Uint32Array
  readonly i32: Int32Array
  readonly addr: number
  readonly controlOffset = MSGHDR_SIZE + IOVEC_SIZE
  readonly dataOffset = MSGHDR_SIZE + IOVEC_SIZE + CONTROL_MAX
  readonly data: Buffer

  constructor(dataBytes: number) {
    this.buf = Buffer.allocUnsafeSlow(this.dataOffset + dataBytes)
    this.buf.fill(0, 0, this.dataOffset)
    this.u32 = new Uint32Array(this.buf.buffer, this.buf.byteOffset, this.dataOffset >> 2)
    this.i32 = new Int32Array(this.buf.buffer, this.buf.byteOffset, this.dataOffset >> 2)
    this.addr = Number(koffi.address(this.buf))
    this.data = this.buf.subarray(this.dataOffset)
    this.set64(MSG_IOV, this.addr + MSGHDR_SIZE)
    this.set64(MSG_IOVLEN, 1)
    this.set64(MSGHDR_SIZE, this.addr + this.dataOffset) // iov_base
  }

  set64(offset: number, value: number): void {
    this.u32[offset >> 2] = value >>> 0
    this.u32[(offset >> 2) + 1] = Math.floor(value / 0x100000000)
  }

  get64(offset: number): number {
    return this.u32[offset >> 2]! + this.u32[(offset >> 2) + 1]! * 0x100000000
  }
}

// Allocated on first use; JS is single-threaded and both calls are synchronous, so one
// block per direction serves every channel of the process.
let sendBlock: MessageBlock | undefined
let recvBlock: MessageBlock | undefined

function sendBlockOf(): MessageBlock {
  if (sendBlock === undefined) sendBlock = new MessageBlock(MAX_FRAME_SIZE)
  return sendBlock
}

function recvBlockOf(): MessageBlock {
  if (recvBlock === undefined) recvBlock = new MessageBlock(MAX_FRAME_SIZE + 1)
  return recvBlock
}

/**
 * Sends one frame with fds in one sendmsg(MSG_DONTWAIT|MSG_NOSIGNAL). Returns the bytes sent,
 * or -errno (EAGAIN: the socket buffer is full). The caller has checked the sizes.
 */
export function sendFrame(fd: number, data: Uint8Array, fds: readonly number[]): number {
  const b = sendBlockOf()
  b.data.set(data, 0)
  b.set64(MSGHDR_SIZE + 8, data.length) // iov_len
  const n = fds.length
  if (n === 0) {
    b.set64(MSG_CONTROL, 0)
    b.set64(MSG_CONTROLLEN, 0)
  } else {
    const c = b.controlOffset
    b.set64(c, CMSGHDR_SIZE + 4 * n) // cmsg_len = CMSG_LEN(4n)
    b.i32[(c + 8) >> 2] = SOL_SOCKET
    b.i32[(c + 12) >> 2] = SCM_RIGHTS
    for (let i = 0; i < n; i++) b.i32[((c + CMSGHDR_SIZE) >> 2) + i] = fds[i]!
    b.set64(MSG_CONTROL, b.addr + c)
    b.set64(MSG_CONTROLLEN, cmsgSpace(4 * n))
  }
  const sent = sendmsg(fd, b.addr, MSG_DONTWAIT | MSG_NOSIGNAL) as number
  return sent < 0 ? -koffi.errno() : sent
}

/** What the last recvFrame() got besides the byte count. Valid until the next call. */
export const received = {
  /** msg_flags: MSG_TRUNC, MSG_CTRUNC. */
  flags: 0,
  /** Every fd the kernel installed in our table, whatever cmsg it came in. */
  fds: [] as number[],
  /** A control message that is not SOL_SOCKET/SCM_RIGHTS was present. */
  foreignControl: false,
  /** The frame's bytes; a view of the shared receive block, overwritten by the next call. */
  data: Buffer.alloc(0) as Buffer,
}

/**
 * Receives one frame (recvmsg with MSG_DONTWAIT|MSG_CMSG_CLOEXEC) into the shared block, with
 * room for `dataBytes` bytes and a control buffer of CMSG_SPACE(4 * fdRoom). Returns the byte
 * count (details in `received`) or -errno. Every fd that arrived is in `received.fds`: from here
 * on the caller owns them and must close the ones it does not hand out.
 */
export function recvFrame(fd: number, dataBytes: number, fdRoom: number): number {
  const b = recvBlockOf()
  b.set64(MSGHDR_SIZE + 8, dataBytes) // iov_len
  b.set64(MSG_CONTROL, b.addr + b.controlOffset)
  b.set64(MSG_CONTROLLEN, cmsgSpace(4 * fdRoom))
  b.i32[MSG_FLAGS >> 2] = 0
  const n = recvmsg(fd, b.addr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) as number
  if (n < 0) return -koffi.errno()
  received.flags = b.i32[MSG_FLAGS >> 2]!
  received.foreignControl = false
  const fds: number[] = []
  const controlLen = b.get64(MSG_CONTROLLEN)
  let off = 0
  while (off + CMSGHDR_SIZE <= controlLen) {
    const c = b.controlOffset + off
    const len = b.get64(c)
    if (len < CMSGHDR_SIZE || off + len > controlLen) break
    if (b.i32[(c + 8) >> 2] === SOL_SOCKET && b.i32[(c + 12) >> 2] === SCM_RIGHTS) {
      const count = (len - CMSGHDR_SIZE) >> 2
      for (let i = 0; i < count; i++) fds.push(b.i32[((c + CMSGHDR_SIZE) >> 2) + i]!)
    } else {
      received.foreignControl = true
    }
    off += (len + 7) & ~7
  }
  received.fds = fds
  received.data = b.data.subarray(0, Math.min(n, dataBytes))
  return n
}

/** Readiness events as libuv reports them. */
export interface PollEvents {
  readable: boolean
  writable: boolean
  disconnect: boolean
}

/** A libuv poll handle on the main loop. close() must come before the fd is closed. */
export interface PollHandle {
  start(events: PollEvents, callback: (status: number, events: PollEvents) => void): void
  stop(): void
  close(): void
  ref(): void
  unref(): void
}

/**
 * koffi.node.poll: a uv_poll_t on Node's main loop (level-triggered). Undocumented in koffi
 * 3.3.4; its callback is called as (status, events) although the .d.ts says (events). Only
 * readiness.ts uses this, so a change in koffi touches one place.
 */
export function pollStart(
  fd: number,
  events: PollEvents,
  callback: (status: number, events: PollEvents) => void,
): PollHandle {
  const cb = callback as unknown as (ev: PollEvents) => void
  const handle = koffi.node.poll(fd, events, cb)
  if (handle === null) throw new NativeError('uv_poll_start', 0)
  const close = () => {
    openPolls.delete(close)
    handle.close()
  }
  openPolls.add(close)
  if (!exitHooked) {
    exitHooked = true
    process.on('exit', closeOpenPolls)
  }
  return {
    start: (ev, next) => handle.start(ev, next as unknown as (ev: PollEvents) => void),
    stop: () => handle.stop(),
    close,
    ref: () => handle.ref(),
    unref: () => handle.unref(),
  }
}

// This thread's open poll handles, closed on its 'exit' event. When a thread ends through
// process.exit() (in a worker: the thread) or an uncaught error, Node keeps dispatching libuv
// callbacks for a moment after JavaScript is no longer allowed; a koffi poll callback then
// aborts the whole process ("FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw"). A
// closed handle's callback never runs; the fds stay open until the thread-exit hooks close
// them. (worker.terminate() runs no JavaScript: an event in that window still aborts.)
const openPolls = new Set<() => void>()
let exitHooked = false

function closeOpenPolls(): void {
  for (const close of [...openPolls]) close()
}

// --- eventfd: the doorbell of shared-memory rings (doorbell.ts) ---------------------------

export const EFD_NONBLOCK = 0o4000 // eventfd(2): O_NONBLOCK on the new fd
export const EFD_CLOEXEC = 0o2000000 // eventfd(2): O_CLOEXEC on the new fd
const F_GETFL = 3 // fcntl: file status flags
const O_NONBLOCK = 0o4000 // file status flag: reads and writes never block

const eventfd = libc.func('int eventfd(unsigned int initval, int flags)')
// The 8-byte counter travels through one preallocated buffer, passed by address: no
// marshalling per call (a ring rings its doorbell on the hot path).
const rw = libc.func('intptr_t write(int fd, intptr_t buf, size_t count)')
const rd = libc.func('intptr_t read(int fd, intptr_t buf, size_t count)')
const counterBuf = Buffer.alloc(8)
const counterAddr = Number(koffi.address(counterBuf))

/** A new non-blocking, close-on-exec eventfd (closed with this thread, see trackFd). */
export function eventFd(): number {
  const fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) as number
  if (fd < 0) fail('eventfd')
  trackFd(fd)
  return fd
}

/** Adds 1 to an eventfd's counter. Returns 0, or the positive errno (EAGAIN: counter full). */
export function eventFdSignal(fd: number): number {
  counterBuf.writeBigUInt64LE(1n, 0)
  return (rw(fd, counterAddr, 8) as number) < 0 ? koffi.errno() : 0
}

/** Reads (and so resets) an eventfd's counter: true if it was set, false if it was zero. */
export function eventFdDrain(fd: number): boolean {
  return (rd(fd, counterAddr, 8) as number) === 8
}

/** True when fd's file status flags include O_NONBLOCK (a read can never block the loop). */
export function isNonBlocking(fd: number): boolean {
  const flags = fcntl(fd, F_GETFL) as number
  return flags >= 0 && (flags & O_NONBLOCK) !== 0
}
