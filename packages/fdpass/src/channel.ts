import { EventEmitter } from 'node:events'
import { FdpassError } from './errors.js'
import * as native from './native.js'
import { Readiness, type ReadyEvents } from './readiness.js'

/** One received frame. The receiver owns `fds` (close-on-exec): close them when done. */
export interface Message {
  /** The frame's bytes (a copy: it stays valid after the next frame arrives). */
  data: Uint8Array
  /** Descriptors that came with the frame, installed in this process by the kernel. */
  fds: number[]
}

/** The peer process as the kernel saw it when the connection was made (SO_PEERCRED). */
export interface PeerCredentials {
  readonly pid: number
  readonly uid: number
  readonly gid: number
}

/** Limits and buffering of a channel. Both ends should use the same frame limits. */
export interface ChannelOptions {
  /** Largest frame in bytes, sent or received. Default 65536; at most 131072. */
  maxFrameSize?: number
  /** Most fds in one frame, sent or received. Default 16; at most 252. */
  maxFdsPerFrame?: number
  /** `send` returns false once this many frames wait in the outbound queue. Default 64. */
  highWaterMark?: number
  /** `send` throws ERR_FDPASS_QUEUE_FULL past this many queued frames. Default 4096. */
  maxQueuedFrames?: number
  /** `send` throws ERR_FDPASS_QUEUE_FULL past this many queued bytes. Default 16 MiB. */
  maxQueuedBytes?: number
  /**
   * Received frames buffered while no 'message' listener takes them (async iterator, or no
   * consumer yet). Past this many the channel stops reading its socket, so a slow consumer
   * back-pressures the sender through the kernel instead of growing memory. Default 64.
   */
  readHighWaterMark?: number
}

/** @internal Resolved, checked limits. */
export interface Limits {
  readonly maxFrameSize: number
  readonly maxFdsPerFrame: number
  readonly highWaterMark: number
  readonly maxQueuedFrames: number
  readonly maxQueuedBytes: number
  readonly readHighWaterMark: number
}

/** The largest `maxFdsPerFrame`: one less than the kernel's SCM_MAX_FD (see README: Limits). */
export const MAX_FDS_PER_FRAME = native.SCM_MAX_FD - 1
/** The largest `maxFrameSize`. Bigger payloads belong in shared memory, passed as an fd. */
export const MAX_FRAME_SIZE = native.MAX_FRAME_SIZE

function intOption(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', `${name} must be an integer in ${min}..${max}`)
  }
  return value
}

/** @internal Checks options before any syscall. */
export function resolveLimits(options: ChannelOptions): Limits {
  if (typeof options !== 'object' || options === null) {
    throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'options must be an object')
  }
  const maxQueuedFrames = intOption(options.maxQueuedFrames, 'maxQueuedFrames', 4096, 1, 2 ** 24)
  return {
    maxFrameSize: intOption(options.maxFrameSize, 'maxFrameSize', 65536, 1, MAX_FRAME_SIZE),
    maxFdsPerFrame: intOption(options.maxFdsPerFrame, 'maxFdsPerFrame', 16, 0, MAX_FDS_PER_FRAME),
    highWaterMark: intOption(options.highWaterMark, 'highWaterMark', Math.min(64, maxQueuedFrames), 1, maxQueuedFrames),
    maxQueuedFrames,
    maxQueuedBytes: intOption(options.maxQueuedBytes, 'maxQueuedBytes', 16 * 1024 * 1024, 1, 2 ** 40),
    readHighWaterMark: intOption(options.readHighWaterMark, 'readHighWaterMark', 64, 1, 2 ** 24),
  }
}

/** @internal The server's first frame: "you are admitted". A client waits for it in connect(). */
export const HELLO = new Uint8Array([0x66, 0x64, 0x70, 0x61, 0x73, 0x73, 0x00, 0x01]) // "fdpass\0\1"

// Frames read or written per readiness wake-up: one busy peer cannot starve the loop.
const READ_BUDGET = 64
const WRITE_BUDGET = 256

interface Outbound {
  readonly data: Uint8Array
  /** Our own duplicates of the caller's fds, closed once the frame is sent or dropped. */
  readonly fds: number[]
}

/** A FIFO with O(1) shift; compacts when the consumed head gets large. */
class Queue<T> {
  #items: T[] = []
  #head = 0
  get length(): number {
    return this.#items.length - this.#head
  }
  push(item: T): void {
    this.#items.push(item)
  }
  peek(): T | undefined {
    return this.#items[this.#head]
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head++] = undefined as T
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }
  drain(): T[] {
    const rest = this.#items.slice(this.#head)
    this.#items = []
    this.#head = 0
    return rest
  }
}

type State = 'handshake' | 'open' | 'closing' | 'closed'

const createToken = Symbol('Channel.create')

/** Events of a Channel and their arguments. */
export interface ChannelEvents {
  message: [message: Message]
  drain: []
  close: [reason: Error | undefined]
  error: [error: Error]
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) native.closeFd(fd)
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * One connected SOCK_SEQPACKET endpoint: frames with fds, in order, boundaries kept.
 *
 * Events: 'message' (Message), 'drain', 'close' (reason: Error | undefined), and 'error' (only
 * emitted when there is a listener; a misbehaving peer never causes an unhandled 'error').
 * Also an async iterable of Message; use one consuming style per channel.
 *
 * Fd ownership: fds passed to `send` stay the caller's (the kernel duplicates them into the
 * peer; a frame that has to wait in the queue holds its own duplicates). Received fds belong
 * to whoever takes the Message; fds nobody took are closed when the channel closes.
 *
 * Threads: the channel's socket, queued duplicates and buffered received fds are closed when
 * the thread that opened them ends (even by `worker.terminate()`). Received fds handed to you
 * are not: close them, pass them to `Segment.fromFd`, or register them with
 * `closeFdOnThreadExit`.
 */
export class Channel extends EventEmitter<ChannelEvents> implements AsyncIterable<Message>, AsyncDisposable {
  /** The peer's pid, uid and gid, from the kernel (SO_PEERCRED), not from the peer's word. */
  readonly peer: PeerCredentials
  /**
   * Settles once the channel is closed and every fd it held is released; never rejects.
   * Resolves `undefined` after a local `close()`/`destroy()`, else the reason: an
   * FdpassError (ERR_FDPASS_PEER_CLOSED when the peer went away, a limit's code for a bad
   * frame, an errno code) or the error given to `destroy(err)`.
   */
  readonly closed: Promise<Error | undefined>

  readonly #fd: number
  readonly #limits: Limits
  readonly #readiness: Readiness
  #state: State
  #reason: Error | undefined
  #resolveClosed!: (reason: Error | undefined) => void
  readonly #outbox = new Queue<Outbound>()
  #outBytes = 0
  #needDrain = false
  readonly #inbox = new Queue<Message>()
  #waiters: ((result: IteratorResult<Message>) => void)[] = []
  #iterators = 0
  #hangupSeen = false
  #handshake: { resolve: () => void; reject: (error: Error) => void } | undefined
  #scheduledDrain = false

  /** @internal Channels come from `connect()` and `listen()`. */
  constructor(token: typeof createToken, fd: number, peer: PeerCredentials, limits: Limits, awaitHello: boolean) {
    if (token !== createToken) {
      throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'Channel cannot be constructed directly: use connect() or listen()')
    }
    super()
    this.#fd = fd
    this.peer = Object.freeze({ ...peer })
    this.#limits = limits
    this.#state = awaitHello ? 'handshake' : 'open'
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
    this.#readiness = new Readiness(fd, this.#onReady)
    // Plain EventEmitter view: the typed event map lists only this class's own events.
    const emitter = this as EventEmitter
    emitter.on('newListener', (event: string | symbol) => {
      if (event === 'message') this.#scheduleInboxDrain()
    })
    emitter.on('removeListener', (event: string | symbol) => {
      if (event === 'message') this.#update()
    })
    this.#update()
  }

  /** @internal */
  static create(fd: number, peer: PeerCredentials, limits: Limits, awaitHello: boolean): Channel {
    return new Channel(createToken, fd, peer, limits, awaitHello)
  }

  /** @internal Resolves when the server's hello arrived; rejects (coded) if it never will. */
  handshake(): Promise<void> {
    if (this.#state !== 'handshake') return Promise.resolve()
    return new Promise((resolve, reject) => {
      this.#handshake = { resolve, reject }
    })
  }

  /** 'open', 'closing' (close() is flushing the queue) or 'closed'. */
  get state(): 'open' | 'closing' | 'closed' {
    return this.#state === 'handshake' ? 'open' : this.#state
  }

  /** Frames waiting in the outbound queue. */
  get writableLength(): number {
    return this.#outbox.length
  }

  /** Bytes waiting in the outbound queue. */
  get writableBytes(): number {
    return this.#outBytes
  }

  /** True once `send` has returned false and 'drain' has not been emitted yet. */
  get writableNeedDrain(): boolean {
    return this.#needDrain
  }

  /** Received frames buffered for a consumer (at most `readHighWaterMark`). */
  get readableLength(): number {
    return this.#inbox.length
  }

  /** The limits this channel enforces. */
  get limits(): Limits {
    return this.#limits
  }

  /**
   * Sends one frame: `data` (may be empty only when fds are given) and up to
   * `maxFdsPerFrame` descriptors, which the caller keeps and may close as soon as this
   * returns. Returns false when the outbound queue has reached `highWaterMark`: wait for
   * 'drain'. Throws (coded, nothing sent) on a bad argument, ERR_FDPASS_QUEUE_FULL past the
   * queue bounds, ERR_FDPASS_CLOSED on a closed or closing channel, and errno codes such as
   * ERR_FDPASS_EBADF (an fd that is not open) without closing the channel.
   */
  send(data: Uint8Array, fds: readonly number[] = []): boolean {
    if (!(data instanceof Uint8Array)) {
      throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'send: data must be a Uint8Array')
    }
    if (!Array.isArray(fds)) {
      throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'send: fds must be an array of file descriptors')
    }
    for (const fd of fds) {
      if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
        throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', `send: ${String(fd)} is not a file descriptor`)
      }
    }
    const limits = this.#limits
    if (data.length > limits.maxFrameSize) {
      throw new FdpassError(
        'ERR_FDPASS_FRAME_TOO_LARGE',
        `send: a ${data.length}-byte frame exceeds maxFrameSize (${limits.maxFrameSize})`,
      )
    }
    if (fds.length > limits.maxFdsPerFrame) {
      throw new FdpassError(
        'ERR_FDPASS_TOO_MANY_FDS',
        `send: ${fds.length} fds exceed maxFdsPerFrame (${limits.maxFdsPerFrame})`,
      )
    }
    if (data.length === 0 && fds.length === 0) {
      // On SOCK_SEQPACKET an empty frame reads exactly like end-of-stream.
      throw new FdpassError('ERR_FDPASS_INVALID_ARGUMENT', 'send: a frame needs at least one byte or one fd')
    }
    if (this.#state !== 'open') {
      throw new FdpassError('ERR_FDPASS_CLOSED', `send: the channel is ${this.#state}`, { cause: this.#reason })
    }
    if (this.#outbox.length === 0) {
      const n = native.sendFrame(this.#fd, data, fds)
      if (n >= 0) return true
      this.#checkSendErrno(-n)
    }
    // Queue a snapshot: the caller may reuse its buffer and close its fds once we return.
    if (this.#outbox.length >= limits.maxQueuedFrames || this.#outBytes + data.length > limits.maxQueuedBytes) {
      throw new FdpassError(
        'ERR_FDPASS_QUEUE_FULL',
        `send: the outbound queue is full (${this.#outbox.length} frames, ${this.#outBytes} bytes); wait for 'drain'`,
      )
    }
    const dups: number[] = []
    for (const fd of fds) {
      const dup = native.dupFd(fd)
      if (dup < 0) {
        closeAll(dups)
        throw FdpassError.fromErrno(-dup, 'fcntl', `send: fd ${fd}`)
      }
      dups.push(dup)
    }
    this.#outbox.push({ data: Uint8Array.prototype.slice.call(data), fds: dups })
    this.#outBytes += data.length
    this.#update()
    if (this.#outbox.length >= limits.highWaterMark) {
      this.#needDrain = true
      return false
    }
    return true
  }

  // Returns for errors that mean "queue and wait"; throws for the rest.
  #checkSendErrno(errno: number): void {
    if (errno === native.EAGAIN || errno === native.ENOBUFS || errno === native.EINTR) return
    const error = this.#sendErrnoError(errno)
    if (this.#state === 'closed') {
      throw new FdpassError('ERR_FDPASS_CLOSED', `send: the channel closed: ${error.message}`, { cause: error })
    }
    throw error
  }

  // A peer that is gone closes the channel; anything else is this frame's problem only.
  #sendErrnoError(errno: number): FdpassError {
    const error = FdpassError.fromErrno(errno, 'sendmsg', 'send')
    if (PEER_GONE.has(error.code)) this.#teardown(this.#peerGone(errno, 'sendmsg'), true)
    return error
  }

  // errno 0: end-of-stream. EPIPE/ECONNRESET/ENOTCONN: the peer is gone. Other errnos are
  // reported as themselves.
  #peerGone(errno: number, syscall = 'recvmsg'): FdpassError {
    const error = FdpassError.fromErrno(errno, syscall, 'channel')
    if (errno !== 0 && !PEER_GONE.has(error.code)) return error
    return new FdpassError(
      'ERR_FDPASS_PEER_CLOSED',
      errno === 0
        ? 'the peer closed the channel (or its process exited)'
        : `the peer closed the channel (or its process exited): ${error.message}`,
      errno === 0 ? {} : { errno: -errno, cause: error },
    )
  }

  /**
   * Graceful close: no more sends; frames already queued are flushed, then the socket is
   * closed. Frames received meanwhile are still delivered. Idempotent; resolves when closed.
   * If the peer never reads, the flush never ends: use `destroy()` after your own deadline.
   */
  close(): Promise<void> {
    if (this.#state === 'handshake') return this.destroy()
    if (this.#state === 'open') {
      this.#state = 'closing'
      if (this.#outbox.length === 0) this.#teardown(undefined, true)
      else this.#update()
    }
    return this.closed.then(() => undefined)
  }

  /**
   * Immediate close: queued outbound frames are dropped (their fd duplicates closed), buffered
   * received frames are dropped and their fds closed, the socket is closed. `closed` resolves
   * with `error` (or undefined). Idempotent.
   */
  destroy(error?: Error): Promise<void> {
    this.#teardown(error, false)
    return this.closed.then(() => undefined)
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  /** Lets the process exit while this channel is open, as `net.Socket.unref()` does. */
  unref(): this {
    this.#readiness.ref(false)
    return this
  }

  /** Undoes `unref()`: an open channel keeps the process alive (the default). */
  ref(): this {
    this.#readiness.ref(true)
    return this
  }

  /**
   * Yields received frames in order. Reading stops while `readHighWaterMark` frames wait,
   * so a slow loop back-pressures the sender. Ends (without throwing) once the channel has
   * closed and the frames received before that were yielded; `closed` tells why. Leaving the
   * loop early (break/return) keeps the channel open; frames it leaves behind are closed
   * with the channel.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Message> {
    this.#iterators++
    let finished = false
    const finish = (): IteratorResult<Message> => {
      if (!finished) {
        finished = true
        this.#iterators--
        if (this.#state === 'closed' && this.#iterators === 0) this.#dropInbox()
        this.#update()
      }
      return { done: true, value: undefined }
    }
    const iterator: AsyncIterableIterator<Message> = {
      next: () => {
        if (finished) return Promise.resolve({ done: true, value: undefined })
        const message = this.#shiftInbox()
        if (message !== undefined) {
          this.#update()
          return Promise.resolve({ done: false, value: message })
        }
        if (this.#state === 'closed') return Promise.resolve(finish())
        return new Promise<IteratorResult<Message>>((resolve) => {
          this.#waiters.push((result) => resolve(result.done === true ? finish() : result))
          this.#update()
        })
      },
      return: () => Promise.resolve(finish()),
      [Symbol.asyncIterator]() {
        return iterator
      },
    }
    return iterator
  }

  // --- readiness ---------------------------------------------------------------------

  // Interest follows demand: read while someone can take frames (or while buffering is
  // under readHighWaterMark), write while frames are queued. A paused reader still watches
  // for hang-up, once, so it is not woken over and over by a level-triggered condition.
  #update(): void {
    if (this.#state === 'closed') return
    const readable = this.#wantsToRead()
    const writable = this.#outbox.length > 0
    this.#readiness.want(readable, writable, !readable && !this.#hangupSeen)
  }

  #wantsToRead(): boolean {
    return (
      this.#state === 'handshake' ||
      this.listenerCount('message') > 0 ||
      this.#waiters.length > 0 ||
      this.#inbox.length < this.#limits.readHighWaterMark
    )
  }

  readonly #onReady = (events: ReadyEvents): void => {
    if (this.#state === 'closed') return
    if (events.writable && this.#outbox.length > 0) this.#flush()
    if (this.#isClosed()) return
    if (events.readable && this.#wantsToRead()) {
      this.#read()
    } else if (events.error || events.disconnect) {
      // A paused reader: the peer has gone or the socket has an error. The frames it sent
      // stay in the kernel until the consumer resumes, then end-of-stream closes the channel.
      // Reading SO_ERROR clears a pending ECONNRESET (see #read), which would otherwise wake
      // us on every loop turn; any other pending error closes the channel now.
      this.#hangupSeen = true
      const errno = native.socketError(this.#fd)
      if (errno !== 0 && errno !== native.ECONNRESET) this.#teardown(this.#peerGone(errno), true)
    }
    if (!this.#isClosed()) this.#update()
  }

  // A method, not a field compare, so TypeScript does not narrow across calls that close.
  #isClosed(): boolean {
    return this.#state === 'closed'
  }

  #read(): void {
    const limits = this.#limits
    const fdRoom = limits.maxFdsPerFrame + 1 // room for one fd too many: see TOO_MANY_FDS below
    for (let budget = READ_BUDGET; budget > 0; budget--) {
      if (this.#state === 'closed' || !this.#wantsToRead()) return
      // The hello is read with its own size, so a tiny maxFrameSize cannot refuse it.
      const maxBytes = this.#state === 'handshake' ? HELLO.length : limits.maxFrameSize
      const n = native.recvFrame(this.#fd, maxBytes + 1, fdRoom)
      if (n < 0) {
        const errno = -n
        if (errno === native.EAGAIN) return
        // ECONNRESET: the peer closed while frames we sent it were unread. The kernel reports
        // it (once) ahead of the frames the peer sent before closing; they still follow, then
        // end-of-stream, so keep reading rather than lose them.
        if (errno === native.EINTR || errno === native.ECONNRESET) continue
        this.#teardown(this.#peerGone(errno), true)
        return
      }
      const { flags, fds } = native.received
      // Checks in order of what a frame can break. Any fds that did arrive in a bad frame are
      // ours (installed by the kernel) and are closed here: none leaks.
      let error: FdpassError | undefined
      if ((flags & native.MSG_CTRUNC) !== 0) {
        // Linux installs a frame's fds one by one and stops at the first failure, setting
        // MSG_CTRUNC and dropping the rest: either the control buffer was full (the peer sent
        // more fds than it holds) or installing failed, which in practice means this process
        // hit its fd limit (EMFILE). A buffer that is not full tells the second case.
        error =
          fds.length < native.fdCapacity(fdRoom)
            ? new FdpassError(
                'ERR_FDPASS_EMFILE',
                `this process ran out of file descriptors (RLIMIT_NOFILE) while receiving a frame: the kernel installed ${fds.length} of its fds and dropped the rest (MSG_CTRUNC), so the frame is lost and the channel is closed`,
                { errno: -native.EMFILE, syscall: 'recvmsg' },
              )
            : new FdpassError(
                'ERR_FDPASS_TRUNCATED',
                `received a frame whose control data was truncated (MSG_CTRUNC): the peer sent more than ${limits.maxFdsPerFrame} fds, the kernel dropped some`,
              )
      } else if (fds.length > limits.maxFdsPerFrame) {
        error = new FdpassError(
          'ERR_FDPASS_TOO_MANY_FDS',
          `received a frame with ${fds.length} fds, more than maxFdsPerFrame (${limits.maxFdsPerFrame})`,
        )
      } else if (native.received.foreignControl) {
        error = new FdpassError('ERR_FDPASS_PROTOCOL', 'received a control message other than SCM_RIGHTS')
      } else if ((flags & native.MSG_TRUNC) !== 0 || n > maxBytes) {
        error =
          this.#state === 'handshake'
            ? new FdpassError('ERR_FDPASS_PROTOCOL', 'the server did not greet as an fdpass server')
            : new FdpassError(
                'ERR_FDPASS_FRAME_TOO_LARGE',
                `received a frame larger than maxFrameSize (${limits.maxFrameSize} bytes)`,
              )
      } else if (n === 0 && fds.length === 0) {
        // recvmsg returns 0 both for end-of-stream and for an empty frame. Our send never
        // writes an empty frame; the poll tells which one this is.
        if (native.peerHungUp(this.#fd)) {
          this.#teardown(this.#peerGone(0), true)
          return
        }
        error = new FdpassError('ERR_FDPASS_PROTOCOL', 'received an empty frame (no bytes, no fds)')
      } else if (this.#state === 'handshake') {
        if (fds.length > 0 || !sameBytes(native.received.data, HELLO)) {
          error = new FdpassError('ERR_FDPASS_PROTOCOL', 'the server did not greet as an fdpass server')
        } else {
          this.#state = 'open'
          const handshake = this.#handshake
          this.#handshake = undefined
          handshake?.resolve()
          continue
        }
      }
      if (error !== undefined) {
        closeAll(fds)
        this.#teardown(error, true)
        return
      }
      this.#deliver({ data: new Uint8Array(native.received.data), fds })
    }
  }

  #deliver(message: Message): void {
    if (this.#inbox.length === 0) {
      if (this.listenerCount('message') > 0) {
        this.emit('message', message)
        return
      }
      const waiter = this.#waiters.shift()
      if (waiter !== undefined) {
        waiter({ done: false, value: message })
        return
      }
    }
    // While buffered, the fds are ours: they close with this thread if it ends first.
    for (const fd of message.fds) native.trackFd(fd)
    this.#inbox.push(message)
    this.#scheduleInboxDrain()
  }

  // Hands a buffered message over: from here its fds are the taker's, untracked (the taker
  // may close them any way it likes, so no hook may stay behind on their numbers).
  #shiftInbox(): Message | undefined {
    const message = this.#inbox.shift()
    if (message !== undefined) for (const fd of message.fds) native.untrackFd(fd)
    return message
  }

  // Frames buffered before a 'message' listener was added go to it first, in order.
  #scheduleInboxDrain(): void {
    if (this.#scheduledDrain) return
    this.#scheduledDrain = true
    process.nextTick(() => {
      this.#scheduledDrain = false
      while (this.#inbox.length > 0 && this.listenerCount('message') > 0) {
        this.emit('message', this.#shiftInbox()!)
      }
      this.#update()
    })
  }

  #flush(): void {
    for (let budget = WRITE_BUDGET; budget > 0; budget--) {
      const frame = this.#outbox.peek()
      if (frame === undefined) break
      const n = native.sendFrame(this.#fd, frame.data, frame.fds)
      if (n < 0) {
        const errno = -n
        if (errno === native.EAGAIN || errno === native.ENOBUFS) break
        if (errno === native.EINTR) continue
        const error = this.#sendErrnoError(errno)
        this.#teardown(error, true)
        return
      }
      this.#outbox.shift()
      this.#outBytes -= frame.data.length
      closeAll(frame.fds)
    }
    if (this.#outbox.length === 0) {
      if (this.#state === 'closing') {
        this.#teardown(undefined, true)
        return
      }
      if (this.#needDrain) {
        this.#needDrain = false
        this.emit('drain')
      }
    }
  }

  // --- teardown ----------------------------------------------------------------------

  // The one way a channel ends. Order: stop the libuv watcher, then close the fd (an fd
  // number must not be reused while libuv still watches it), then release every fd we hold:
  // queued duplicates always; received frames unless an iterator will still yield them.
  #teardown(reason: Error | undefined, keepInboxForIterators: boolean): void {
    if (this.#state === 'closed') return
    const handshake = this.#handshake
    this.#state = 'closed'
    this.#handshake = undefined
    if (handshake !== undefined) {
      // The server closes a connection it does not admit without a word.
      const code = (reason as FdpassError | undefined)?.code
      if (code === 'ERR_FDPASS_PEER_CLOSED') {
        reason = new FdpassError(
          'ERR_FDPASS_UNAUTHORIZED',
          'the server closed the connection without admitting it: its authorize() refused this process, or it is shutting down',
          { cause: reason },
        )
      }
    }
    this.#reason = reason
    this.#readiness.close()
    native.closeFd(this.#fd)
    for (const frame of this.#outbox.drain()) closeAll(frame.fds)
    this.#outBytes = 0
    if (!keepInboxForIterators || this.#iterators === 0) this.#dropInbox()
    if (this.#inbox.length === 0) {
      const waiters = this.#waiters
      this.#waiters = []
      for (const waiter of waiters) waiter({ done: true, value: undefined })
    }
    handshake?.reject(reason ?? new FdpassError('ERR_FDPASS_CLOSED', 'the channel was closed before it was admitted'))
    this.#resolveClosed(reason)
    process.nextTick(() => {
      if (reason !== undefined && this.listenerCount('error') > 0 && !isPeerClosed(reason)) this.emit('error', reason)
      this.emit('close', reason)
    })
  }

  #dropInbox(): void {
    for (const message of this.#inbox.drain()) closeAll(message.fds)
  }
}

const PEER_GONE = new Set<string>(['ERR_FDPASS_EPIPE', 'ERR_FDPASS_ECONNRESET', 'ERR_FDPASS_ENOTCONN'])

function isPeerClosed(error: Error): boolean {
  return FdpassError.isInstance(error) && error.code === 'ERR_FDPASS_PEER_CLOSED'
}
