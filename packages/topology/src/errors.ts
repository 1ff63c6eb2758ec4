/** Stable codes of @ipc-pubsub/topology errors. Match on `error.code`. */
export type TopologyErrorCode =
  /** A bad argument, reported before anything happens. */
  | 'ERR_TOPOLOGY_INVALID_ARGUMENT'
  /** A peer sent a message that breaks docs/PROTOCOL.md; its connection is closed. */
  | 'ERR_TOPOLOGY_PROTOCOL'
  /** The peer speaks another protocol version. */
  | 'ERR_TOPOLOGY_VERSION'
  /** The client is closed (or closing) and cannot take this call. */
  | 'ERR_TOPOLOGY_CLOSED'
  /** An AbortSignal ended the wait. */
  | 'ERR_TOPOLOGY_ABORTED'
  /** The hub address is held by a process this node does not trust (authorize refused it). */
  | 'ERR_TOPOLOGY_UNTRUSTED_HUB'
  /** The hub declared this node gone (it missed the failover grace period); it rejoins under a new id. */
  | 'ERR_TOPOLOGY_NODE_LEFT'
  /**
   * join() was not synced with a hub within its `timeout`. `hubPid` is the pid of the process
   * holding the hub address that did not answer (stopped, or stuck), if one was reached.
   */
  | 'ERR_TOPOLOGY_TIMEOUT'
  /**
   * The worker thread that runs this node's hub could not start (e.g. dist/hub-worker.js is
   * missing from a bundle), or ended unexpectedly (then emitted as 'error': the domain elects
   * a new hub).
   */
  | 'ERR_TOPOLOGY_HUB_THREAD'
  /** An async iterator fell more than its bound behind the changes. */
  | 'ERR_TOPOLOGY_ITERATOR_OVERFLOW'
  /** The directory-mode lock failed with an errno: `ERR_TOPOLOGY_` + its name. */
  | `ERR_TOPOLOGY_E${string}`

const marker = Symbol.for('@ipc-pubsub/topology.TopologyError')

/** Every error @ipc-pubsub/topology throws, rejects with or emits. `cause` is set when wrapping. */
export class TopologyError extends Error {
  readonly code: TopologyErrorCode
  readonly errno: number | undefined
  readonly syscall: string | undefined
  /** ERR_TOPOLOGY_TIMEOUT: the pid of the hub's process that did not answer, if one was reached. */
  readonly hubPid: number | undefined

  constructor(
    code: TopologyErrorCode,
    message: string,
    options: { cause?: unknown; errno?: number; syscall?: string; hubPid?: number | undefined } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'TopologyError'
    this.code = code
    this.errno = options.errno
    this.syscall = options.syscall
    this.hubPid = options.hubPid
    Object.defineProperty(this, marker, { value: true })
  }

  /** True for a TopologyError from any installed copy of this package. */
  static isInstance(value: unknown): value is TopologyError {
    return typeof value === 'object' && value !== null && marker in value
  }
}
