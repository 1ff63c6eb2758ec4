import { EventEmitter } from 'node:events'
import { statSync, unlinkSync } from 'node:fs'
import { type ParsedAddress, parseAddress } from './address.js'
import { Channel, type ChannelOptions, HELLO, type Limits, type PeerCredentials, resolveLimits } from './channel.js'
import { FdpassError } from './errors.js'
import * as native from './native.js'
import { Readiness } from './readiness.js'

/** Decides whether a peer may connect. May return a Promise; a throw or rejection refuses. */
export type Authorize = (peer: PeerCredentials) => boolean | Promise<boolean>

/** Options of `listen()`: channel limits apply to every accepted channel. */
export interface ListenOptions extends ChannelOptions {
  /**
   * Who may connect. Default: peers with this process's uid only. Anyone in the network
   * namespace can connect to an abstract name, so this is the access control.
   */
  authorize?: Authorize
  /** listen(2) backlog: connections the kernel holds before accept. Default 511. */
  backlog?: number
  /**
   * Filesystem paths only: if the path exists but nobody accepts on it (a stale socket file
   * left by a crashed server), unlink it and bind again. Default false: EADDRINUSE.
   */
  unlinkStale?: boolean
  /**
   * Admitted channels that wait for a consumer (no 'connection' listener, async iterator
   * not pulling). Past this many the server stops accepting; the kernel backlog then fills
   * and further connects fail with ERR_FDPASS_EAGAIN. Default 64.
   */
  maxPendingChannels?: number
}

/** @internal The default server policy: same uid as this process. */
export function sameUid(peer: PeerCredentials): boolean {
  return peer.uid === process.getuid?.()
}

// After EMFILE/ENFILE the pending connection keeps the listening socket readable (poll is
// level-triggered), so retrying at once would spin. Accepting pauses instead, for a delay
// that doubles on every failed retry of the same episode, from the first to the last value.
const FD_EXHAUSTED_BACKOFF_FIRST_MS = 10
const FD_EXHAUSTED_BACKOFF_MAX_MS = 1000
const ACCEPT_BUDGET = 64

const createToken = Symbol('Server.create')

/** Events of a Server and their arguments. */
export interface ServerEvents {
  connection: [channel: Channel]
  refused: [peer: PeerCredentials, reason: FdpassError]
  close: [reason: Error | undefined]
  error: [error: Error]
}

/**
 * A listening SOCK_SEQPACKET socket. Emits 'connection' (Channel) for every admitted peer,
 * 'refused' (PeerCredentials, reason) for refused ones, 'error' and 'close'. Also an async
 * iterable of Channels.
 *
 * 'error' is ERR_FDPASS_EMFILE (this process's fd limit) or ERR_FDPASS_ENFILE (the system's)
 * from accept4, once per episode (until every waiting connection is accepted): accepting
 * pauses with exponential back-off (10 ms .. 1 s) and resumes by itself; connections wait in
 * the kernel's backlog meanwhile. It is emitted only with a listener (no crash); without one,
 * the same error goes to `process.emitWarning`, so it is never silent. Other accept4 errors
 * are handled the same way.
 *
 * Admission: accept4 -> SO_PEERCRED -> `authorize(peer)` -> the server sends its hello frame
 * and only then hands out the Channel. A refused peer's socket is closed without a word.
 */
export class Server extends EventEmitter<ServerEvents> implements AsyncIterable<Channel>, AsyncDisposable {
  /** The address as given to `listen()`. */
  readonly address: string
  /** Settles when the listening socket is closed; never rejects (undefined, or the error). */
  readonly closed: Promise<Error | undefined>

  readonly #fd: number
  readonly #parsed: ParsedAddress
  readonly #limits: Limits
  readonly #authorize: Authorize
  readonly #maxPending: number
  readonly #readiness: Readiness
  readonly #pathIno: number | undefined
  readonly #channels = new Set<Channel>()
  #pending: Channel[] = []
  #waiters: ((result: IteratorResult<Channel>) => void)[] = []
  #closed = false
  #ref = true
  #backoff: NodeJS.Timeout | undefined
  // The delay of the next back-off in the current accept-failure episode, and the errno that
  // was reported for it; both 0 outside an episode. An episode starts at a failed accept4 and
  // ends when accept4 finds the backlog empty (EAGAIN).
  #backoffMs = 0
  #backoffErrno = 0
  #resolveClosed!: (reason: Error | undefined) => void

  /** @internal Servers come from `listen()`. */
  constructor(
    token: typeof createToken,
    fd: number,
    address: string,
    parsed: ParsedAddress,
    limits: Limits,
    authorize: Authorize,
    maxPending: number,
    pathIno: number | undefined,
  ) {
    if (token !== createToken) {
      throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'Server cannot be constructed directly: use listen()')
    }
    super()
    this.address = address
    this.#fd = fd
    this.#parsed = parsed
    this.#limits = limits
    this.#authorize = authorize
    this.#maxPending = maxPending
    this.#pathIno = pathIno
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
    this.#readiness = new Readiness(fd, () => this.#accept())
    // Plain EventEmitter view: the typed event map lists only this class's own events.
    const emitter = this as EventEmitter
    emitter.on('newListener', (event: string | symbol) => {
      if (event === 'connection') process.nextTick(() => this.#handOutPending())
    })
    this.#update()
  }

  /** @internal */
  static create(...args: ConstructorParameters<typeof Server> extends [unknown, ...infer R] ? R : never): Server {
    return new Server(createToken, ...args)
  }

  /** True until `close()`/`destroy()`. */
  get listening(): boolean {
    return !this.#closed
  }

  /** Channels this server admitted that are still open. */
  get channels(): ReadonlySet<Channel> {
    return this.#channels
  }

  /**
   * Stops accepting and closes the listening socket (and unlinks the socket file this server
   * created, if it is still the same file). Channels already handed out stay open: close them
   * yourself, or use `destroy()`. Admitted channels nobody took yet are closed. Idempotent.
   */
  close(): Promise<void> {
    this.#shutdown(undefined)
    return this.closed.then(() => undefined)
  }

  /** `close()`, then destroys every channel this server admitted. Idempotent. */
  async destroy(error?: Error): Promise<void> {
    this.#shutdown(error)
    await Promise.all([...this.#channels].map((channel) => channel.destroy()))
    await this.closed
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  /** Lets the process exit while the server listens, as `net.Server.unref()` does. */
  unref(): this {
    this.#ref = false
    this.#readiness.ref(false)
    this.#backoff?.unref()
    return this
  }

  /** Undoes `unref()`: a listening server keeps the process alive (the default). */
  ref(): this {
    this.#ref = true
    this.#readiness.ref(true)
    this.#backoff?.ref()
    return this
  }

  /**
   * Yields admitted channels. The iterator ends when the server closes. While no one pulls,
   * up to `maxPendingChannels` wait; then the server stops accepting.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Channel> {
    let finished = false
    const iterator: AsyncIterableIterator<Channel> = {
      next: () => {
        if (finished) return Promise.resolve({ done: true, value: undefined })
        const channel = this.#pending.shift()
        if (channel !== undefined) {
          this.#update()
          return Promise.resolve({ done: false, value: channel })
        }
        if (this.#closed) {
          finished = true
          return Promise.resolve({ done: true, value: undefined })
        }
        return new Promise<IteratorResult<Channel>>((resolve) => {
          this.#waiters.push(resolve)
          this.#update()
        })
      },
      return: () => {
        finished = true
        return Promise.resolve({ done: true, value: undefined })
      },
      [Symbol.asyncIterator]() {
        return iterator
      },
    }
    return iterator
  }

  #canAccept(): boolean {
    return (
      !this.#closed &&
      this.#backoff === undefined &&
      (this.listenerCount('connection') > 0 || this.#waiters.length > 0 || this.#pending.length < this.#maxPending)
    )
  }

  #update(): void {
    if (!this.#closed) this.#readiness.want(this.#canAccept(), false)
  }

  #accept(): void {
    for (let budget = ACCEPT_BUDGET; budget > 0 && this.#canAccept(); budget--) {
      const fd = native.acceptFd(this.#fd)
      if (fd < 0) {
        const errno = -fd
        if (errno === native.EAGAIN) {
          // Every waiting connection was taken: the failure episode, if any, is over.
          this.#backoffMs = 0
          this.#backoffErrno = 0
          break
        }
        if (errno === native.EINTR || errno === native.ECONNABORTED) continue
        this.#acceptFailed(errno)
        break
      }
      // Progress, but the episode lasts until the backlog is drained: a process hovering at
      // its fd limit (a slot frees, one accept takes it, the next fails) reports once, not
      // at every flap. The next pause starts short again.
      if (this.#backoffMs !== 0) this.#backoffMs = FD_EXHAUSTED_BACKOFF_FIRST_MS
      this.#admit(fd)
    }
    this.#update()
  }

  // accept4 failed (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...): a waiting connection keeps the
  // listening fd readable and poll is level-triggered, so retrying at once would spin.
  // Pause accepting, report once per episode (again only if the errno changes), and retry
  // after a delay that doubles up to FD_EXHAUSTED_BACKOFF_MAX_MS.
  #acceptFailed(errno: number): void {
    if (this.#backoffErrno !== errno) {
      const failed = FdpassError.fromErrno(errno, 'accept4', `Server(${this.address})`)
      const why =
        errno === native.EMFILE || errno === native.ENFILE
          ? `: ${errno === native.EMFILE ? 'this process' : 'the system'} ran out of file descriptors`
          : ''
      const error = new FdpassError(
        failed.code,
        `${failed.message}${why}; accepting pauses (back-off ${FD_EXHAUSTED_BACKOFF_FIRST_MS} ms to ${FD_EXHAUSTED_BACKOFF_MAX_MS} ms) and resumes by itself, connections wait in the backlog`,
        { errno: failed.errno, syscall: 'accept4' },
      )
      this.#backoffErrno = errno
      if (this.#backoffMs === 0) this.#backoffMs = FD_EXHAUSTED_BACKOFF_FIRST_MS
      this.#report(error)
    }
    const delay = this.#backoffMs
    this.#backoffMs = Math.min(delay * 2, FD_EXHAUSTED_BACKOFF_MAX_MS)
    this.#backoff = setTimeout(() => {
      this.#backoff = undefined
      this.#update()
    }, delay)
    // While paused the poll handle is stopped, so this timer is what keeps a ref'd server's
    // process alive; an unref'd server's must not.
    if (!this.#ref) this.#backoff.unref()
  }

  #report(error: FdpassError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error)
    else process.emitWarning(error.message, { type: 'FdpassWarning', code: error.code })
  }

  #admit(fd: number): void {
    let peer: PeerCredentials
    try {
      peer = native.peerCred(fd)
    } catch {
      native.closeFd(fd)
      return
    }
    let verdict: boolean | Promise<boolean>
    try {
      verdict = this.#authorize(peer)
    } catch (error) {
      this.#refuse(fd, peer, error)
      return
    }
    if (typeof verdict === 'boolean') {
      this.#finishAdmit(fd, peer, verdict)
      return
    }
    Promise.resolve(verdict).then(
      (ok) => this.#finishAdmit(fd, peer, ok === true),
      (error: unknown) => this.#refuse(fd, peer, error),
    )
  }

  #refuse(fd: number, peer: PeerCredentials, cause?: unknown): void {
    native.closeFd(fd)
    if (this.listenerCount('refused') > 0) {
      const reason = new FdpassError(
        'ERR_FDPASS_UNAUTHORIZED',
        `refused pid ${peer.pid} uid ${peer.uid} gid ${peer.gid}`,
        cause === undefined ? {} : { cause },
      )
      this.emit('refused', peer, reason)
    }
  }

  #finishAdmit(fd: number, peer: PeerCredentials, ok: boolean): void {
    if (this.#closed) {
      native.closeFd(fd)
      return
    }
    if (!ok) {
      this.#refuse(fd, peer)
      return
    }
    // A fresh socket's buffer is empty: the hello cannot meet EAGAIN. Any failure means the
    // client is already gone.
    if (native.sendFrame(fd, HELLO, []) !== HELLO.length) {
      native.closeFd(fd)
      return
    }
    const channel = Channel.create(fd, peer, this.#limits, false)
    this.#channels.add(channel)
    void channel.closed.then(() => this.#channels.delete(channel))
    if (this.listenerCount('connection') > 0) {
      this.emit('connection', channel)
      return
    }
    const waiter = this.#waiters.shift()
    if (waiter !== undefined) waiter({ done: false, value: channel })
    else this.#pending.push(channel)
  }

  #handOutPending(): void {
    while (this.#pending.length > 0 && this.listenerCount('connection') > 0) {
      this.emit('connection', this.#pending.shift()!)
    }
    this.#update()
  }

  // Order: stop libuv watching, close the fd, then unlink the path (after close, so no peer
  // can connect to a file whose socket is about to vanish).
  #shutdown(reason: Error | undefined): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#backoff !== undefined) clearTimeout(this.#backoff)
    this.#backoff = undefined
    this.#readiness.close()
    native.closeFd(this.#fd)
    if (this.#parsed.kind === 'path' && this.#pathIno !== undefined) {
      try {
        if (statSync(this.#parsed.path).ino === this.#pathIno) unlinkSync(this.#parsed.path)
      } catch {
        // Already gone: nothing to clean.
      }
    }
    for (const channel of this.#pending) void channel.destroy()
    this.#pending = []
    for (const waiter of this.#waiters) waiter({ done: true, value: undefined })
    this.#waiters = []
    this.#resolveClosed(reason)
    process.nextTick(() => this.emit('close', reason))
  }
}

/**
 * Listens on `address`: `@name` (Linux abstract namespace, exact-length: see README) or a
 * filesystem path. Synchronous: throws a coded error at once, e.g. ERR_FDPASS_EADDRINUSE when
 * another process holds the name or a stale socket file sits on the path.
 */
export function listen(address: string, options: ListenOptions = {}): Server {
  const parsed = parseAddress(address)
  const limits = resolveLimits(options)
  const authorize = options.authorize ?? sameUid
  if (typeof authorize !== 'function') {
    throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'authorize must be a function')
  }
  const backlog = options.backlog ?? 511
  if (!Number.isInteger(backlog) || backlog < 1 || backlog > 65535) {
    throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'backlog must be an integer in 1..65535')
  }
  const maxPending = options.maxPendingChannels ?? 64
  if (!Number.isInteger(maxPending) || maxPending < 1) {
    throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'maxPendingChannels must be a positive integer')
  }
  const context = `listen(${address})`
  let fd: number
  try {
    fd = native.socketSeqpacket()
  } catch (error) {
    throw FdpassError.fromNative(error, context)
  }
  let pathIno: number | undefined
  try {
    try {
      native.bindFd(fd, parsed.sockaddr)
    } catch (error) {
      if (
        parsed.kind === 'path' &&
        options.unlinkStale === true &&
        error instanceof native.NativeError &&
        errnoIs(error.errno, 'EADDRINUSE') &&
        isStaleSocket(parsed)
      ) {
        unlinkSync(parsed.path)
        native.bindFd(fd, parsed.sockaddr)
      } else {
        throw error
      }
    }
    if (parsed.kind === 'path') pathIno = statSync(parsed.path).ino
    native.listenFd(fd, backlog)
  } catch (error) {
    native.closeFd(fd)
    if (pathIno !== undefined && parsed.kind === 'path') {
      try {
        unlinkSync(parsed.path)
      } catch {}
    }
    throw FdpassError.isInstance(error) ? error : FdpassError.fromNative(error, context)
  }
  return Server.create(fd, address, parsed, limits, authorize, maxPending, pathIno)
}

function errnoIs(errno: number, name: string): boolean {
  return FdpassError.fromErrno(errno, '', '').code === `ERR_FDPASS_${name}`
}

// A socket file nobody accepts on: connect is refused.
function isStaleSocket(parsed: ParsedAddress): boolean {
  let probe: number
  try {
    if (!statSync((parsed as { path: string }).path).isSocket()) return false
    probe = native.socketSeqpacket()
  } catch {
    return false
  }
  try {
    native.connectFd(probe, parsed.sockaddr)
    return false
  } catch (error) {
    return error instanceof native.NativeError && errnoIs(error.errno, 'ECONNREFUSED')
  } finally {
    native.closeFd(probe)
  }
}
