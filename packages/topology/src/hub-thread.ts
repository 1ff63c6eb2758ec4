// Where a node's hub runs once it has won the election: off the main thread.
//
// - A client on the main thread runs its hub in a worker thread of its own (HubThread; the
//   script is hub-worker.ts), so that nothing the main thread does (a long synchronous loop, a
//   huge publish, a debugger pause) delays the joins and leaves of every other process. The
//   owner talks to its hub over the socket like any node, and to the thread over its port only
//   to claim, to authorize (custom `authorize` only), and to stop.
// - A client that already lives in a worker thread runs its hub on that thread (LocalHub):
//   it is off the main thread already, and a hub thread nested in it would be torn down by
//   Node before its parent, closing the parent's hub connection while the parent itself is
//   being torn down, which koffi 3.3.4 cannot take (below).
//
// Thread teardown and koffi: a thread's poll handles (koffi.node.poll, behind every fdpass
// socket) must not see an event while Node tears the thread down: koffi then calls into
// JavaScript, which is forbidden at that point, and Node aborts the whole process ("FATAL
// ERROR: Error::ThrowAsJavaScriptException napi_throw"). So a thread is never left to be torn
// down with sockets open where we can help it: we close the hub's sockets before we end its
// thread, and when the owner's thread exits (process.exit(), an uncaught error: the 'exit'
// event) the client stops its hub synchronously: a LocalHub at once, a HubThread by asking it
// and waiting (Atomics.wait, bounded) until it has closed everything. What no JavaScript sees
// coming (worker.terminate() of the owner's thread) leaves a small window: an event that
// arrives on one of that thread's sockets during its teardown aborts the process.
import { Worker } from 'node:worker_threads'
import { type Authorize, FdpassError, type PeerCredentials } from '@ipc-pubsub/fdpass'
import { listenHub, type Reservation } from './election.js'
import { TopologyError } from './errors.js'
import { Hub } from './hub.js'
import { type ClaimRequest, type FromHubThread, reviveError, type ToHubThread } from './hub-messages.js'

/** How long destroy() waits for the hub to cut its connections before terminating the thread. */
const DESTROY_WAIT_MS = 5000
/** How long close() waits for the hub's hand-over (it drains at most 1 s) before terminating. */
const CLOSE_WAIT_MS = 5000

/**
 * The built script, next to the bundle this code is in. Running from the TypeScript sources
 * (this package's own tests) it is the built one too, because a worker cannot use the
 * parent's TypeScript loader on Node 20: build before testing (turbo's test task does; the
 * test setup checks dist is not older than src).
 */
function workerUrl(): URL {
  return import.meta.url.endsWith('.ts')
    ? new URL('../dist/hub-worker.js', import.meta.url)
    : new URL('./hub-worker.js', import.meta.url)
}

export interface HubHostOptions {
  /** The owner's custom authorize, asked for every connecting peer (undefined: same uid). */
  readonly authorize: Authorize | undefined
  /** The hub's onError. */
  readonly onError: (error: Error) => void
  /** The host ended without being asked (a thread that crashed): it no longer runs a hub. */
  readonly onCrash: (host: HubHost, error: TopologyError) => void
  /** An armed standby claimed on its own (the hub's process died): it runs the hub now. */
  readonly onClaimed: (host: HubHost) => void
}

/** Runs the hub a client won: a worker thread (HubThread) or the client's own thread (LocalHub). */
export interface HubHost {
  /** True while it runs the hub (claimed, not stopping). */
  readonly holding: boolean
  /** True until it was asked to stop or ended. */
  readonly usable: boolean
  /** True while armed (a standby watching the hub's process). */
  readonly armed: boolean
  /**
   * Standby only: claims on its own, with `request`, the moment process `pid` (the current
   * hub's) exits; then onClaimed. Replaces an earlier arm. A no-op where it cannot watch.
   */
  arm(pid: number, request: ClaimRequest): void
  /** Stops watching. */
  disarm(): void
  /**
   * Claims the hub with a reservation the owner took, and listens. Resolves true when this
   * host runs the hub, false when another process bound the address in between (or the host
   * was stopped meanwhile). The reservation is released whenever this host does not hold the hub.
   */
  claim(reservation: Reservation, request: () => ClaimRequest): Promise<boolean>
  /** Graceful: the hub mints `leaving`'s node-left, drains (≤ ~1 s), closes. Idempotent. */
  close(leaving: string | undefined): Promise<void>
  /** Immediate: the hub cuts every connection and closes. Idempotent. */
  destroy(leaving?: string): Promise<void>
  /**
   * The owner's thread is exiting and no later turn will run: starts an immediate stop whose
   * sockets close at once or in another thread. Returns a wait for the latter (undefined: done).
   */
  exitNow(leaving: string): ((ms: number) => void) | undefined
}

/** The host for a client on `mainThread` (see the file comment). */
export function createHubHost(mainThread: boolean, options: HubHostOptions): HubHost {
  return mainThread ? new HubThread(options) : new LocalHub(options)
}

type State = 'starting' | 'idle' | 'claiming' | 'holding' | 'stopping' | 'ended'

/** The hub in a worker thread of the owner's (main) thread. */
export class HubThread implements HubHost {
  readonly #worker: Worker
  readonly #options: HubHostOptions
  #state: State = 'starting'
  readonly #ready: Promise<void>
  #settleReady!: (error?: Error) => void
  #claimWaiter: ((result: FromHubThread | Error) => void) | undefined
  // The election this thread holds (or is claiming with); released once the thread ended.
  #reservation: Reservation | undefined
  // True once a claim was posted: stopping then goes through the thread's hub (close:
  // drain, destroy: cut), so that it never ends with a socket open (see the file comment).
  #claimed = false
  // True while the thread watches the hub's process (a poll handle is open there too).
  #armed = false
  // Ever armed: the thread may hold a hub it claimed on its own, or a poll handle.
  #everArmed = false
  // Set to 1 by the thread once its hub is stopped and every socket closed.
  readonly #stopped = new Int32Array(new SharedArrayBuffer(4))
  #error: Error | undefined
  #deadline: { timer: NodeJS.Timeout; at: number } | undefined
  readonly #exited: Promise<void>
  #resolveExited!: () => void

  constructor(options: HubHostOptions) {
    this.#options = options
    // execArgv: the hub runs our built code only; the owner's loaders and preloads (tsx,
    // --require of an APM agent, ...) would slow its start and have no business there.
    this.#worker = new Worker(workerUrl(), { execArgv: [], stdin: false, workerData: { stopped: this.#stopped } })
    // It never keeps the process alive on its own: only while a claim or a stop is under way
    // (a pending join()/close() must not let the process exit).
    this.#worker.unref()
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#settleReady = (error) => (error ? reject(error) : resolve())
    })
    this.#ready.catch(() => {})
    this.#exited = new Promise((resolve) => {
      this.#resolveExited = resolve
    })
    this.#worker.on('message', (message: FromHubThread) => this.#onMessage(message))
    this.#worker.on('error', (error) => {
      this.#error ??= error
    })
    this.#worker.on('exit', (code) => this.#onExit(code))
  }

  get holding(): boolean {
    return this.#state === 'holding'
  }

  get usable(): boolean {
    return this.#state !== 'stopping' && this.#state !== 'ended'
  }

  get armed(): boolean {
    return this.#armed
  }

  arm(pid: number, request: ClaimRequest): void {
    if (this.#state !== 'starting' && this.#state !== 'idle') return
    this.#armed = true
    this.#everArmed = true
    this.#post({ type: 'arm', pid, request })
  }

  disarm(): void {
    if (!this.#armed) return
    this.#armed = false
    this.#post({ type: 'disarm' })
  }

  /**
   * Waits for the thread (a standby thread is up already), hands the reservation over and
   * lets the thread listen. Rejects with ERR_TOPOLOGY_HUB_THREAD when the thread cannot start
   * or dies, or with the listen error.
   */
  async claim(reservation: Reservation, request: () => ClaimRequest): Promise<boolean> {
    if (this.#state !== 'starting' && this.#state !== 'idle') {
      reservation.release()
      return false
    }
    this.#reservation = reservation
    this.#worker.ref()
    try {
      await this.#ready
      // (The state is re-read after every await: a stop or an exit may have changed it.)
      if (this.#now() !== 'idle') return false
      reservation.handOver()
      this.#state = 'claiming'
      this.#claimed = true
      this.#armed = false
      const result = await new Promise<FromHubThread | Error>((resolve) => {
        this.#claimWaiter = resolve
        this.#post(request())
      })
      this.#claimWaiter = undefined
      if (result instanceof Error) throw result
      if (result.type === 'claimed' && this.#now() === 'claiming') {
        this.#state = 'holding'
        reservation.listening()
        return true
      }
      if (this.#now() === 'claiming') this.#state = 'idle'
      if (result.type === 'failed') throw reviveError(result.error)
      return false
    } finally {
      if (this.#now() !== 'holding' && this.#now() !== 'stopping') {
        reservation.listening()
        reservation.release()
        if (this.#reservation === reservation) this.#reservation = undefined
      }
      if (this.#now() !== 'stopping') this.#worker.unref()
    }
  }

  #now(): State {
    return this.#state
  }

  close(leaving: string | undefined): Promise<void> {
    return this.#stop('close', leaving, CLOSE_WAIT_MS)
  }

  destroy(leaving?: string): Promise<void> {
    return this.#stop('destroy', leaving, DESTROY_WAIT_MS)
  }

  exitNow(leaving: string): ((ms: number) => void) | undefined {
    if (this.#state === 'ended' || !(this.#claimed || this.#everArmed)) return undefined
    void this.#stop('destroy', leaving, DESTROY_WAIT_MS)
    return (ms) => {
      // The main thread blocks here (it is exiting anyway) while the hub thread runs.
      if (ms > 0) Atomics.wait(this.#stopped, 0, 0, ms)
    }
  }

  #stop(how: 'close' | 'destroy', leaving: string | undefined, waitMs: number): Promise<void> {
    if (this.#state === 'ended') return this.#exited
    this.#state = 'stopping'
    this.#worker.ref()
    // The thread stops its hub (a destroy() after a close() cuts the drain short) and then
    // exits by itself (hub-worker.ts): terminate() is only the last resort for a stuck one.
    this.#post({ type: how, leaving })
    this.#terminateBy(Date.now() + waitMs)
    return this.#exited
  }

  // A stuck hub (a bug) must not hold close()/destroy() forever.
  #terminateBy(at: number): void {
    if (this.#deadline !== undefined && this.#deadline.at <= at) return
    if (this.#deadline !== undefined) clearTimeout(this.#deadline.timer)
    this.#deadline = { at, timer: setTimeout(() => void this.#worker.terminate(), at - Date.now()) }
  }

  #post(message: ToHubThread): void {
    if (this.#state === 'ended') return
    this.#worker.postMessage(message)
  }

  #onMessage(message: FromHubThread): void {
    switch (message.type) {
      case 'ready':
        if (this.#state === 'starting') this.#state = 'idle'
        this.#settleReady()
        return
      case 'claimed':
      case 'taken':
        if (!message.armed) {
          this.#claimWaiter?.(message)
          return
        }
        // The armed watch fired. Only a standby that nobody asked to claim or stop cares.
        this.#armed = false
        if (message.type === 'claimed' && this.#state === 'idle') {
          this.#state = 'holding'
          this.#claimed = true
          this.#options.onClaimed(this)
        }
        return
      case 'failed':
        if (this.#claimWaiter !== undefined) this.#claimWaiter(message)
        else this.#options.onError(reviveError(message.error))
        return
      case 'error':
        this.#options.onError(reviveError(message.error))
        return
      case 'authorize':
        void this.#authorize(message.seq, message.peer)
        return
      case 'closed':
        // Every socket of the thread is closed; it exits by itself next (see #stop).
        return
    }
  }

  async #authorize(seq: number, peer: PeerCredentials): Promise<void> {
    let ok = false
    try {
      ok = (await this.#options.authorize?.(peer)) === true
    } catch {
      // A throwing authorize refuses, as fdpass's does.
    }
    this.#post({ type: 'authorized', seq, ok })
  }

  #onExit(code: number): void {
    const asked = this.#state === 'stopping'
    const wasHolding = this.#state === 'holding'
    this.#state = 'ended'
    if (this.#deadline !== undefined) clearTimeout(this.#deadline.timer)
    const error = new TopologyError(
      'ERR_TOPOLOGY_HUB_THREAD',
      wasHolding ? `the hub thread ended (exit code ${code}): electing a new hub` : `the hub thread ended (exit code ${code})`,
      this.#error === undefined ? {} : { cause: this.#error },
    )
    this.#settleReady(error)
    this.#claimWaiter?.(error)
    // Its sockets are closed (a thread's fds close with it), so the claim can go: in directory
    // mode the next lock holder replaces the socket file it may have left.
    this.#reservation?.listening()
    this.#reservation?.release()
    this.#reservation = undefined
    this.#resolveExited()
    if (!asked) this.#options.onCrash(this, error)
  }
}

/** The hub on the owner's own (worker) thread. */
class LocalHub implements HubHost {
  readonly #options: HubHostOptions
  #hub: Hub | undefined
  #stopped = false

  constructor(options: HubHostOptions) {
    this.#options = options
  }

  get holding(): boolean {
    return this.#hub !== undefined && !this.#stopped
  }

  get usable(): boolean {
    return !this.#stopped
  }

  get armed(): boolean {
    return false
  }

  // A client in a worker thread claims on its own thread at no cost: no standby to arm.
  arm(): void {}

  disarm(): void {}

  async claim(reservation: Reservation, request: () => ClaimRequest): Promise<boolean> {
    if (this.#stopped || this.#hub !== undefined) {
      reservation.release()
      return false
    }
    const { address, path, hub } = request()
    const authorize = this.#options.authorize
    reservation.handOver()
    try {
      const server = listenHub(address, path, authorize ? { authorize } : {})
      this.#hub = new Hub({ server, release: () => reservation.release() }, { ...hub, onError: this.#options.onError })
      return true
    } catch (error) {
      reservation.release()
      // EADDRINUSE: another process bound the name since the placeholder closed: it won.
      if (FdpassError.isInstance(error) && error.code === 'ERR_FDPASS_EADDRINUSE') return false
      throw error
    } finally {
      reservation.listening()
    }
  }

  close(leaving: string | undefined): Promise<void> {
    this.#stopped = true
    return this.#hub?.close(leaving) ?? Promise.resolve()
  }

  destroy(leaving?: string): Promise<void> {
    this.#stopped = true
    return this.#hub?.destroy(leaving) ?? Promise.resolve()
  }

  exitNow(leaving: string): undefined {
    // Hub.destroy closes every socket before its first await.
    void this.destroy(leaving)
    return undefined
  }
}
