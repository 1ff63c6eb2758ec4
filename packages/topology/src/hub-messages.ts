// What a client's thread and its hub thread say to each other (hub-thread.ts <-> hub-worker.ts),
// over the worker's MessagePort (structured clone: plain data only, so errors travel as
// their fields and are rebuilt on arrival).
import { FdpassError, type FdpassErrorCode, type PeerCredentials } from '@ipc-pubsub/fdpass'
import { TopologyError, type TopologyErrorCode } from './errors.js'
import type { TopologyEvent } from './history.js'

/** What the hub thread needs to claim the address and run the hub. */
export interface ClaimRequest {
  readonly type: 'claim'
  readonly address: string
  /** Directory mode: replace a stale socket file before listening. */
  readonly path: boolean
  /** Directory mode: the election lock, which an armed standby takes itself. */
  readonly lockPath: string | undefined
  /** The owner has a custom `authorize`: ask it (over the port) for every connecting peer. */
  readonly askAuthorize: boolean
  readonly hub: {
    readonly id: string
    readonly epoch: number
    readonly history: readonly TopologyEvent[]
    readonly tail: number
    readonly grace: number
  }
}

/** Owner -> hub thread. */
export type ToHubThread =
  | ClaimRequest
  /**
   * Standby: claim as soon as process `pid` (the current hub's) exits, with this request
   * (its epoch is raised to the clock at that moment). Replaces an earlier arm.
   */
  | { readonly type: 'arm'; readonly pid: number; readonly request: ClaimRequest }
  /** Standby: stop watching. */
  | { readonly type: 'disarm' }
  | { readonly type: 'authorized'; readonly seq: number; readonly ok: boolean }
  | { readonly type: 'close' | 'destroy'; readonly leaving: string | undefined }

/** Hub thread -> owner. */
export type FromHubThread =
  /** The script is loaded and waits for a claim. */
  | { readonly type: 'ready' }
  /** The hub listens on the address (`armed`: on its own, when the watched hub died). */
  | { readonly type: 'claimed'; readonly armed: boolean }
  /** Another process bound the address first (it is the hub). */
  | { readonly type: 'taken'; readonly armed: boolean }
  /** Listening failed for another reason. */
  | { readonly type: 'failed'; readonly error: SerializedError }
  /** The hub's onError (a peer's protocol violation, an eviction). */
  | { readonly type: 'error'; readonly error: SerializedError }
  /** A connecting peer, for the owner's `authorize`. */
  | { readonly type: 'authorize'; readonly seq: number; readonly peer: PeerCredentials }
  /** close/destroy finished: the socket and every connection are closed. */
  | { readonly type: 'closed' }

export interface SerializedError {
  readonly name: string
  readonly message: string
  readonly code: string | undefined
  readonly errno: number | undefined
  readonly syscall: string | undefined
  readonly stack: string | undefined
  readonly cause: SerializedError | undefined
}

export function serializeError(error: unknown, depth = 0): SerializedError {
  const e = (typeof error === 'object' && error !== null ? error : new Error(String(error))) as Partial<
    Error & { code: unknown; errno: unknown; syscall: unknown }
  >
  return {
    name: typeof e.name === 'string' ? e.name : 'Error',
    message: typeof e.message === 'string' ? e.message : String(error),
    code: typeof e.code === 'string' ? e.code : undefined,
    errno: typeof e.errno === 'number' ? e.errno : undefined,
    syscall: typeof e.syscall === 'string' ? e.syscall : undefined,
    stack: typeof e.stack === 'string' ? e.stack : undefined,
    cause: e.cause !== undefined && depth < 4 ? serializeError(e.cause, depth + 1) : undefined,
  }
}

/** Rebuilds the error the hub thread saw, as the same class (users match on `code`). */
export function reviveError(error: SerializedError): Error {
  const options = {
    ...(error.cause === undefined ? {} : { cause: reviveError(error.cause) }),
    ...(error.errno === undefined ? {} : { errno: error.errno }),
    ...(error.syscall === undefined ? {} : { syscall: error.syscall }),
  }
  let revived: Error
  if (error.code?.startsWith('ERR_TOPOLOGY_')) {
    revived = new TopologyError(error.code as TopologyErrorCode, error.message, options)
  } else if (error.code?.startsWith('ERR_FDPASS_')) {
    revived = new FdpassError(error.code as FdpassErrorCode, error.message, options)
  } else {
    revived = new Error(error.message, error.cause === undefined ? undefined : { cause: options.cause })
    revived.name = error.name
    if (error.code !== undefined) Object.assign(revived, { code: error.code })
  }
  if (error.stack !== undefined) revived.stack = error.stack
  return revived
}
