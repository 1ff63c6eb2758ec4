// Where a domain's hub lives and how a node claims it (docs/PROTOCOL.md, "Election").
//
// Abstract mode: the hub address is the abstract socket name `@ipc-pubsub/1/<uid>/<domain>`.
// bind(2) is the election: exactly one process wins it, and the kernel frees the name when
// the winner dies, so there is never anything stale to clean up.
//
// Directory mode (for processes in different network namespaces sharing a volume): the hub
// address is the socket file `<dir>/<domain>.hub`; the election is flock(LOCK_EX|LOCK_NB)
// on `<dir>/<domain>.lock`. The kernel drops the lock when its holder dies, and only the
// lock holder may unlink and re-create the socket file, so a stale socket file left by a
// crashed hub is removed by the next winner and is never an obstacle.
//
// The hub runs in a worker thread (hub-thread.ts), which takes a while to start. So the
// election is split: the client's own thread takes it at once (reserve(): the abstract name
// bound by a placeholder listener, or the directory lock), and the hub thread listens once
// it is up (listenHub()). Only the winner starts a thread.
import { unlinkSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { join } from 'node:path'
import {
  cancelCloseFdOnThreadExit,
  closeFdOnThreadExit,
  FdpassError,
  type ListenOptions,
  listen,
  type Server,
} from '@ipc-pubsub/fdpass'
import { TopologyError } from './errors.js'
import * as native from './native.js'

/** Domain names: 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit. */
const DOMAIN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
/** sun_path holds 108 bytes including the NUL terminator. */
const MAX_SOCKET_PATH_BYTES = 107

/** The hub's side of a won election: the listening socket, and how to give the claim up. */
export interface Claim {
  readonly server: Server
  /** Gives up the claim after the server is closed. Idempotent. */
  release(): void
}

/**
 * A won election, held by the thread that owns the client while its hub thread starts and
 * runs (see hub-thread.ts). Taking it is synchronous and cheap, so of all the nodes that race
 * for a free hub address only the winner pays for starting a worker thread.
 */
export interface Reservation {
  /**
   * Lets the hub thread bind the address. Abstract mode: closes the placeholder listener that
   * held the name (the hub thread binds it right after; a process that binds it in between
   * has won the election instead). Directory mode: nothing (the lock stays ours).
   */
  handOver(): void
  /**
   * The hub thread listens (or lost): abstract mode lets go the connections that queued on
   * the placeholder, so that they retry at once, now against the hub.
   */
  listening(): void
  /** Gives the claim up once the hub thread's socket is closed (directory mode: unlocks). Idempotent. */
  release(): void
}

/** Where a domain's hub is, and how to try to become it. */
export interface Rendezvous {
  /** The fdpass address clients connect to. */
  readonly address: string
  /** True in directory mode: the hub thread replaces a stale socket file before it listens. */
  readonly path: boolean
  /** Directory mode: the election lock file. */
  readonly lockPath?: string
  /** Takes the election if no one holds it; undefined if someone does. */
  reserve(): Reservation | undefined
}

/**
 * In the hub thread, after the reservation was handed over: listens on the hub address.
 * Directory mode first unlinks the socket file a dead hub may have left (only the lock holder
 * may, and our owner holds the lock). Throws ERR_FDPASS_EADDRINUSE if another process bound
 * the abstract name first.
 */
export function listenHub(address: string, path: boolean, options: ListenOptions): Server {
  if (path) {
    try {
      unlinkSync(address)
    } catch {}
  }
  return listen(address, options)
}

export function checkDomain(domain: unknown): string {
  if (typeof domain !== 'string' || !DOMAIN.test(domain)) {
    throw new TopologyError(
      'ERR_TOPOLOGY_INVALID_ARGUMENT',
      `domain must be 1-64 characters of [A-Za-z0-9_.-] starting with a letter or digit, got ${JSON.stringify(domain)}`,
    )
  }
  return domain
}

/** The abstract-namespace rendezvous of `domain` for this process's uid. */
export function abstractRendezvous(domain: string): Rendezvous {
  const uid = process.getuid?.() ?? 0
  const address = `@ipc-pubsub/1/${uid}/${domain}`
  return {
    address,
    path: false,
    reserve() {
      // The placeholder admits nobody: a node that connects while our hub thread starts waits
      // in its admission (no retry storm, no election of its own) until listening() lets it go.
      let letGo!: (admit: boolean) => void
      const held = new Promise<boolean>((resolve) => {
        letGo = resolve
      })
      let placeholder: Server
      try {
        placeholder = listen(address, { authorize: () => held })
      } catch (error) {
        if (FdpassError.isInstance(error) && error.code === 'ERR_FDPASS_EADDRINUSE') return undefined
        throw error
      }
      placeholder.on('error', () => {})
      const close = () => void placeholder.destroy()
      return {
        handOver: close,
        listening: () => letGo(false),
        release() {
          close()
          letGo(false)
        },
      }
    },
  }
}

/** The directory-mode rendezvous of `domain` in `directory`. */
export function directoryRendezvous(directory: string, domain: string): Rendezvous {
  if (typeof directory !== 'string' || directory.length === 0) {
    throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'directory must be a non-empty path')
  }
  const address = join(directory, `${domain}.hub`)
  const lockPath = join(directory, `${domain}.lock`)
  if (Buffer.byteLength(address) > MAX_SOCKET_PATH_BYTES) {
    throw new TopologyError(
      'ERR_TOPOLOGY_INVALID_ARGUMENT',
      `the hub socket path ${address} is longer than ${MAX_SOCKET_PATH_BYTES} bytes: use a shorter directory`,
    )
  }
  return { address, path: true, lockPath, reserve: () => lockElection(lockPath) }
}

/**
 * Directory mode's election: takes the flock on `lockPath` if no one holds it. The lock fd
 * belongs to the calling thread (it closes if the thread ends); release() unlocks.
 */
export function lockElection(lockPath: string): Reservation | undefined {
  let lockFd: number
  try {
    lockFd = native.openLockFile(lockPath)
  } catch (error) {
    throw nativeError(error, `cannot open ${lockPath}`)
  }
  // The lock is this thread's: if the thread ends (a worker that crashes or is terminated),
  // the fd must close with it or the domain never elects again.
  closeFdOnThreadExit(lockFd)
  let claimed = false
  try {
    if (!native.tryLockExclusive(lockFd)) return undefined
    let released = false
    claimed = true
    return {
      handOver() {},
      listening() {},
      release() {
        if (released) return
        released = true
        // The hub's server unlinked its socket file on close (or a crash left it stale for
        // the next lock holder to replace); closing the fd drops the lock.
        closeLock(lockFd)
      },
    }
  } catch (error) {
    throw nativeError(error, `flock(${lockPath}) failed`)
  } finally {
    if (!claimed) closeLock(lockFd)
  }
}

// Unregister first: the thread-exit hook must never outlive the fd (the number is reused).
function closeLock(fd: number): void {
  cancelCloseFdOnThreadExit(fd)
  native.closeFd(fd)
}

/** A failed open/flock as ERR_TOPOLOGY_<errno name>; anything else is rethrown. */
function nativeError(error: unknown, message: string): TopologyError {
  if (!(error instanceof native.NativeError)) throw error
  const name = Object.entries(osConstants.errno).find(([, value]) => value === error.errno)?.[0] ?? 'EIO'
  return new TopologyError(`ERR_TOPOLOGY_${name}` as `ERR_TOPOLOGY_E${string}`, `${message}: ${name}`, {
    errno: -error.errno,
    syscall: error.syscall,
  })
}
