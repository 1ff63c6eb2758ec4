import { constants as bufferConstants } from 'node:buffer'
import { fstatSync } from 'node:fs'
import { ShmError, type ShmErrorCode } from './errors.js'
import * as native from './native.js'

/** Names of memfd seals, as `seal()` takes them and `seals` reports them. */
export type SealName = 'seal' | 'shrink' | 'grow' | 'write' | 'future-write' | 'exec'

const sealBits: Record<SealName, number> = {
  seal: native.F_SEAL_SEAL,
  shrink: native.F_SEAL_SHRINK,
  grow: native.F_SEAL_GROW,
  write: native.F_SEAL_WRITE,
  'future-write': native.F_SEAL_FUTURE_WRITE,
  exec: native.F_SEAL_EXEC,
}

/** The largest segment a Uint8Array can span in this Node version. */
export const MAX_SEGMENT_SIZE: number = bufferConstants.MAX_LENGTH

export interface CreateOptions {
  /** A name for debugging: shown in /proc/<pid>/fd and /proc/<pid>/maps as `memfd:<name>`. */
  name?: string
  /** Fault every page in now, writable, so the first writes do not pay page faults. */
  prefault?: boolean
}

export interface FromFdOptions {
  /**
   * Map for reading. Writes through `bytes` then stay private to this process (copy-on-write)
   * and never reach the shared memory, so they cannot corrupt it nor crash the process.
   */
  readonly?: boolean
  /**
   * Refuse a descriptor that is not sealed well enough (the fd is closed, nothing is mapped).
   * `true` requires 'shrink' (a peer that can shrink a mapped file can kill us with SIGBUS) and,
   * when `readonly`, 'write' or 'future-write' too. A list requires exactly those seals.
   */
  requireSeals?: boolean | readonly SealName[]
  /** Pre-fault the page tables now. */
  prefault?: boolean
  /** A name for debugging (error messages); the file keeps the name its creator gave it. */
  name?: string
}

export interface OpenNamedOptions {
  /** Create the segment if missing; 'exclusive' fails with ERR_SHM_EEXIST if it exists. */
  create?: boolean | 'exclusive'
  /** With `create`: the size to create it with. An existing smaller segment grows; none shrinks. */
  size?: number
  /** Permission bits for a segment this call creates (umask applies). Default 0o600. */
  mode?: number
  /** Open and map for reading only; see `FromFdOptions.readonly`. */
  readonly?: boolean
  /** Pre-fault the page tables now. */
  prefault?: boolean
}

// What the FinalizationRegistry needs to release a mapping; it must not reference the
// ArrayBuffer or the Segment, or neither could ever be collected.
interface MappingState {
  readonly addr: number
  readonly size: number
  readonly fd: number
  closed: boolean
}

// Invariant: a mapping's address range is never unmapped while a JS view of it can exist.
// close() replaces the shared pages with a private "tombstone" (MAP_FIXED, atomic), so views
// the user kept read zeros and no later mmap can reuse the range; only when V8 has collected
// the ArrayBuffer (so no view can exist) does this finalizer munmap the range. A segment that
// was never closed is released here as well: its fd is closed and its pages unmapped.
function release(state: MappingState): void {
  try {
    native.munmapRange(state.addr, state.size)
  } catch {
    // Nothing to report to: the range stays reserved, which is safe.
  }
  if (!state.closed) {
    state.closed = true
    try {
      native.closeFd(state.fd)
    } catch {}
  }
}

// Collected ranges are released a slice at a time, one macrotask per slice of at most
// RELEASE_BUDGET_NS. After a major GC, V8 hands over thousands of views at once: unmapping them
// all in one task stalled the event loop for tens of milliseconds (measured by the bench: 6,488
// munmaps, 23 ms, which showed as 30-50 ms pub/sub round trips). The total work is the same;
// other work now runs between slices, and memory returns over a few ms to a few hundred ms
// after the GC instead of all at once. The invariant above holds: a range is only ever
// unmapped later than its view was collected. The immediates stay ref'd: an unref'd one does
// not stop the loop from blocking in poll, so an idle process would keep collected memory
// mapped.
const RELEASE_BUDGET_NS = 1_000_000n
const collected: MappingState[] = []
let next = 0

function releaseSlice(): void {
  const deadline = process.hrtime.bigint() + RELEASE_BUDGET_NS
  do release(collected[next++] as MappingState)
  while (next < collected.length && process.hrtime.bigint() < deadline)
  if (next < collected.length) {
    setImmediate(releaseSlice)
    return
  }
  collected.length = 0
  next = 0
}

const mappings = new FinalizationRegistry<MappingState>((state) => {
  // The first queued range schedules the drain; later ones join it.
  if (collected.push(state) === 1) setImmediate(releaseSlice)
})

let memfdFlags = native.MFD_CLOEXEC | native.MFD_ALLOW_SEALING | native.MFD_NOEXEC_SEAL

/**
 * A shared-memory segment: a file descriptor (memfd or named POSIX shm) and one mapping of it.
 * `bytes` is a zero-copy view of the whole mapping. Another process sees the same memory
 * through the fd (pass it with @ipc-pubsub/fdpass or child_process stdio) or by name.
 */
export class Segment implements Disposable {
  readonly #state: MappingState
  readonly #buffer: ArrayBuffer
  readonly #bytes: Uint8Array
  readonly #readonly: boolean
  readonly #name: string
  readonly #sharedName: string | undefined
  #unlinked = false

  private constructor(
    fd: number,
    size: number,
    readonly: boolean,
    prefault: boolean,
    name: string,
    sharedName?: string,
  ) {
    // Both are writable from JS. Read-only is MAP_PRIVATE: the pages stay the shared ones until this process writes one,
    // which then gets a private copy. A PROT_READ mapping would turn a stray write into SIGSEGV.
    let flags = readonly ? native.MAP_PRIVATE | native.MAP_NORESERVE : native.MAP_SHARED
    // MAP_POPULATE on a private writable mapping would copy every page: read-only pre-faults
    // with MADV_POPULATE_READ instead.
    if (prefault && !readonly) flags |= native.MAP_POPULATE
    const addr = native.mmapFd(size, native.PROT_READ | native.PROT_WRITE, flags, fd)
    if (prefault && readonly) {
      try {
        native.madviseRange(addr, size, native.MADV_POPULATE_READ)
      } catch {
        // Older kernels (< 5.14) lack it: pre-faulting is only an optimisation.
      }
    }
    this.#state = { addr, size, fd, closed: false }
    this.#buffer = native.viewOf(addr, size)
    this.#bytes = new Uint8Array(this.#buffer)
    this.#readonly = readonly
    this.#name = name
    this.#sharedName = sharedName
    mappings.register(this.#buffer, this.#state)
  }

  /**
   * Creates an anonymous segment (memfd_create: close-on-exec, sealing allowed) of `size`
   * bytes, mapped read-write and filled with zeros.
   */
  static create(size: number, options: CreateOptions = {}): Segment {
    checkSize(size)
    const name = options.name ?? 'ipc-pubsub'
    checkDebugName(name)
    let fd: number
    try {
      fd = createMemfd(name)
    } catch (error) {
      throw ShmError.fromNative(error, `Segment.create(${size})`)
    }
    try {
      native.ftruncateFd(fd, size)
      return new Segment(fd, size, false, options.prefault === true, name)
    } catch (error) {
      native.closeFd(fd)
      throw ShmError.fromNative(error, `Segment.create(${size})`)
    }
  }

  /**
   * Maps a descriptor received from elsewhere. The segment owns `fd` from this call on: it is
   * closed by `close()`, and at once if this call throws (unless `fd` is not an open fd). The
   * size comes from fstat(2), never from the sender's word.
   */
  static fromFd(fd: number, options: FromFdOptions = {}): Segment {
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new ShmError('ERR_SHM_INVALID_FD', `Segment.fromFd: ${String(fd)} is not a file descriptor`)
    }
    const name = options.name ?? `fd ${fd}`
    let stat: ReturnType<typeof fstatSync>
    try {
      stat = fstatSync(fd)
    } catch (error) {
      // Not an open fd: there is nothing of ours to close.
      const e = error as NodeJS.ErrnoException
      throw new ShmError(`ERR_SHM_${e.code ?? 'EBADF'}` as ShmErrorCode, `Segment.fromFd(${name}): fstat failed with ${e.code}`, {
        errno: e.errno,
        syscall: 'fstat',
      })
    }
    try {
      // Ours from here: closed with this thread if it ends before close() (see native.trackFd).
      native.trackFd(fd)
      const readonly = options.readonly === true
      const required = requiredSeals(options.requireSeals, readonly)
      if (!stat.isFile()) {
        throw new ShmError('ERR_SHM_INVALID_FD', `Segment.fromFd(${name}): not a memfd, shm or regular file`)
      }
      checkSize(stat.size, `Segment.fromFd(${name}): the file's size`)
      if (required.length > 0) {
        const present = sealNames(native.getSeals(fd))
        const missing = required.filter((any) => !any.some((seal) => present.includes(seal)))
        if (missing.length > 0) {
          throw new ShmError(
            'ERR_SHM_UNSEALED',
            `Segment.fromFd(${name}): refused, the sender did not seal it against ${missing
              .map((any) => any.join(' or '))
              .join(', ')} (seals: ${present.join(', ') || 'none'})`,
          )
        }
      }
      return new Segment(fd, stat.size, readonly, options.prefault === true, name)
    } catch (error) {
      try {
        native.closeFd(fd)
      } catch {}
      if (ShmError.isInstance(error)) throw error
      throw ShmError.fromNative(error, `Segment.fromFd(${name})`)
    }
  }

  /**
   * Opens (and with `create`, creates) a named POSIX segment (shm_open(3), /dev/shm/<name>),
   * for processes that cannot pass descriptors. The name outlives every process until
   * `unlink()`. Named segments cannot be sealed: map them only between processes you trust.
   */
  static openNamed(name: string, options: OpenNamedOptions = {}): Segment {
    const path = checkSharedName(name)
    const readonly = options.readonly === true
    const create = options.create ?? false
    if (create !== false && create !== true && create !== 'exclusive') {
      throw new ShmError('ERR_SHM_INVALID_ARGUMENT', `Segment.openNamed: create must be a boolean or 'exclusive'`)
    }
    if (options.size !== undefined) checkSize(options.size)
    if (create && options.size === undefined) {
      throw new ShmError('ERR_SHM_INVALID_SIZE', `Segment.openNamed(${path}): create needs a size`)
    }
    if (readonly && (create || options.size !== undefined)) {
      throw new ShmError('ERR_SHM_INVALID_ARGUMENT', `Segment.openNamed(${path}): a read-only open cannot create or size`)
    }
    const mode = options.mode ?? 0o600
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
      throw new ShmError('ERR_SHM_INVALID_ARGUMENT', `Segment.openNamed(${path}): mode must be an integer in 0..0o777`)
    }
    let oflag = readonly ? native.O_RDONLY : native.O_RDWR
    if (create) oflag |= native.O_CREAT
    if (create === 'exclusive') oflag |= native.O_EXCL
    let fd: number
    try {
      fd = native.shmOpen(path, oflag, mode)
    } catch (error) {
      throw ShmError.fromNative(error, `Segment.openNamed(${path})`)
    }
    try {
      let size = fstatSync(fd).size
      if (options.size !== undefined && size < options.size) {
        native.ftruncateFd(fd, options.size)
        size = options.size
      }
      checkSize(size, `Segment.openNamed(${path}): the segment's size`)
      return new Segment(fd, size, readonly, options.prefault === true, path, path)
    } catch (error) {
      try {
        native.closeFd(fd)
      } catch {}
      // Only an exclusive create knows the name is its own to remove.
      if (create === 'exclusive') {
        try {
          native.shmUnlink(path)
        } catch {}
      }
      if (ShmError.isInstance(error)) throw error
      throw ShmError.fromNative(error, `Segment.openNamed(${path})`)
    }
  }

  /**
   * Removes a named segment's name; processes that have it mapped keep their memory. Returns
   * false if no segment had that name.
   */
  static unlinkNamed(name: string): boolean {
    const path = checkSharedName(name)
    try {
      native.shmUnlink(path)
      return true
    } catch (error) {
      const e = ShmError.fromNative(error, `Segment.unlinkNamed(${path})`)
      if (e.code === 'ERR_SHM_ENOENT') return false
      throw e
    }
  }

  /** The file descriptor. Pass it to other processes; the segment still owns and closes it. */
  get fd(): number {
    this.#check('fd')
    return this.#state.fd
  }

  /** Size in bytes, from fstat(2) or as created. */
  get size(): number {
    return this.#state.size
  }

  /** The debug name (memfd), the shm name (named), or `fd N` (received). */
  get name(): string {
    return this.#name
  }

  /** True when mapped read-only (MAP_PRIVATE): our writes never reach other processes. */
  get readonly(): boolean {
    return this.#readonly
  }

  get closed(): boolean {
    return this.#state.closed
  }

  /**
   * The whole mapping as one zero-copy Uint8Array (the same object on every access). After
   * `close()` it reads zeros and writes go nowhere; it never aliases another mapping.
   */
  get bytes(): Uint8Array {
    this.#check('bytes')
    return this.#bytes
  }

  /** The mapping's ArrayBuffer, for other typed-array views. Same lifetime rules as `bytes`. */
  get buffer(): ArrayBuffer {
    this.#check('buffer')
    return this.#buffer
  }

  /**
   * An Int32Array window at `byteOffset` (a multiple of 4) of `length` elements (default: to
   * the end), for `Atomics` across processes. Atomics.wait/notify do not work across
   * processes; load/store/add/compareExchange do.
   */
  int32Array(byteOffset = 0, length?: number): Int32Array {
    const [offset, count] = this.#window('int32Array', 4, byteOffset, length)
    return new Int32Array(this.#buffer, offset, count)
  }

  /** A BigInt64Array window at `byteOffset` (a multiple of 8); see `int32Array`. */
  bigInt64Array(byteOffset = 0, length?: number): BigInt64Array {
    const [offset, count] = this.#window('bigInt64Array', 8, byteOffset, length)
    return new BigInt64Array(this.#buffer, offset, count)
  }

  /**
   * Adds memfd seals (fcntl F_ADD_SEALS). 'write' needs every writable shared mapping gone,
   * including this one (ERR_SHM_EBUSY otherwise): a writer seals 'future-write' instead.
   */
  seal(...seals: SealName[]): this {
    this.#check('seal')
    let bits = 0
    for (const seal of seals) {
      if (!isSealName(seal)) {
        throw new ShmError('ERR_SHM_INVALID_ARGUMENT', `Segment.seal: unknown seal ${JSON.stringify(seal)}`)
      }
      bits |= sealBits[seal]
    }
    try {
      native.addSeals(this.#state.fd, bits)
    } catch (error) {
      const e = ShmError.fromNative(error, `Segment.seal(${seals.join(', ')})`)
      if (e.code === 'ERR_SHM_EBUSY') {
        throw new ShmError(
          e.code,
          `${e.message}: 'write' needs every writable shared mapping gone (this one too); seal 'future-write' to keep writing here`,
          { errno: e.errno, syscall: e.syscall },
        )
      }
      throw e
    }
    return this
  }

  /** The seals the file carries (none for a named or non-memfd segment). */
  get seals(): SealName[] {
    this.#check('seals')
    try {
      return sealNames(native.getSeals(this.#state.fd))
    } catch (error) {
      throw ShmError.fromNative(error, 'Segment.seals')
    }
  }

  /**
   * Removes this named segment's name (see `Segment.unlinkNamed`); works before or after
   * `close()`. Returns false if the name was already gone.
   */
  unlink(): boolean {
    if (this.#sharedName === undefined) {
      throw new ShmError('ERR_SHM_INVALID_ARGUMENT', 'Segment.unlink: only a named segment has a name to unlink')
    }
    if (this.#unlinked) return false
    this.#unlinked = true
    return Segment.unlinkNamed(this.#sharedName)
  }

  /**
   * Releases the segment now: the shared pages are dropped from this process, the fd is
   * closed. Views obtained earlier stay safe to touch (they read zeros). Idempotent.
   */
  close(): void {
    const state = this.#state
    if (state.closed) return
    state.closed = true
    try {
      native.mmapTombstone(state.addr, state.size)
    } catch {
      // Out of memory for the tombstone: keep the shared mapping until the finalizer runs,
      // which is still safe; only the release of the pages is late.
    }
    try {
      native.closeFd(state.fd)
    } catch {}
  }

  [Symbol.dispose](): void {
    this.close()
  }

  #check(what: string): void {
    if (this.#state.closed) {
      throw new ShmError('ERR_SHM_CLOSED', `Segment.${what}: the segment is closed`)
    }
  }

  #window(what: string, unit: number, byteOffset: number, length: number | undefined): [number, number] {
    this.#check(what)
    const size = this.#state.size
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset > size) {
      throw new ShmError('ERR_SHM_OUT_OF_RANGE', `Segment.${what}: byteOffset ${byteOffset} is outside 0..${size}`)
    }
    if (byteOffset % unit !== 0) {
      throw new ShmError('ERR_SHM_MISALIGNED', `Segment.${what}: byteOffset ${byteOffset} is not a multiple of ${unit}`)
    }
    const count = length ?? Math.floor((size - byteOffset) / unit)
    if (!Number.isInteger(count) || count < 0 || byteOffset + count * unit > size) {
      throw new ShmError(
        'ERR_SHM_OUT_OF_RANGE',
        `Segment.${what}: ${String(length)} elements at ${byteOffset} do not fit in ${size} bytes`,
      )
    }
    return [byteOffset, count]
  }
}

function createMemfd(name: string): number {
  try {
    return native.memfdCreate(name, memfdFlags)
  } catch (error) {
    // MFD_NOEXEC_SEAL exists from Linux 6.3; older kernels say EINVAL. Without it newer
    // kernels log a warning per process, so it is worth trying first.
    if (error instanceof native.NativeError && error.errno === native.EINVAL && memfdFlags & native.MFD_NOEXEC_SEAL) {
      memfdFlags &= ~native.MFD_NOEXEC_SEAL
      return native.memfdCreate(name, memfdFlags)
    }
    throw error
  }
}

function checkSize(size: unknown, what = 'size'): asserts size is number {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0 || size > MAX_SEGMENT_SIZE) {
    throw new ShmError(
      'ERR_SHM_INVALID_SIZE',
      `${what} must be an integer in 1..${MAX_SEGMENT_SIZE}, got ${String(size)}`,
    )
  }
}

function checkDebugName(name: unknown): void {
  // memfd names are at most 249 bytes and cannot hold NUL.
  if (typeof name !== 'string' || Buffer.byteLength(name) > 249 || name.includes('\0')) {
    throw new ShmError('ERR_SHM_INVALID_NAME', `Segment.create: name must be a string of at most 249 bytes without NUL`)
  }
}

/** Validates a POSIX shm name and returns it with its leading '/'. */
function checkSharedName(name: unknown): string {
  if (typeof name !== 'string') {
    throw new ShmError('ERR_SHM_INVALID_NAME', `shm name must be a string, got ${typeof name}`)
  }
  const bare = name.startsWith('/') ? name.slice(1) : name
  if (
    bare.length === 0 ||
    Buffer.byteLength(bare) > 250 ||
    bare.includes('/') ||
    bare.includes('\0') ||
    bare === '.' ||
    bare === '..'
  ) {
    throw new ShmError(
      'ERR_SHM_INVALID_NAME',
      `shm name ${JSON.stringify(name)} must be 1..250 bytes, optionally after one leading '/', with no other '/' or NUL`,
    )
  }
  return `/${bare}`
}

function isSealName(value: unknown): value is SealName {
  return typeof value === 'string' && Object.hasOwn(sealBits, value)
}

function sealNames(bits: number): SealName[] {
  return (Object.keys(sealBits) as SealName[]).filter((name) => (bits & sealBits[name]) !== 0)
}

/** Each entry is satisfied by any one of its seals. */
function requiredSeals(require: FromFdOptions['requireSeals'], readonly: boolean): SealName[][] {
  if (require === undefined || require === false) return []
  if (require === true) return readonly ? [['shrink'], ['write', 'future-write']] : [['shrink']]
  if (!Array.isArray(require)) {
    throw new ShmError('ERR_SHM_INVALID_ARGUMENT', 'Segment.fromFd: requireSeals must be a boolean or a list of seals')
  }
  return require.map((seal) => {
    if (!isSealName(seal)) {
      throw new ShmError('ERR_SHM_INVALID_ARGUMENT', `Segment.fromFd: unknown seal ${JSON.stringify(seal)}`)
    }
    return [seal]
  })
}
