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
import { closeSync, constants, openSync, unlinkSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { join } from 'node:path'
import { FdpassError, type ListenOptions, listen, type Server } from '@ipc-pubsub/fdpass'
import { TopologyError } from './errors.js'
import * as native from './native.js'

/** Domain names: 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit. */
const DOMAIN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
/** sun_path holds 108 bytes including the NUL terminator. */
const MAX_SOCKET_PATH_BYTES = 107

/** A won election: the listening hub socket, and how to give the claim up. */
export interface Claim {
  readonly server: Server
  /** Gives up the claim after the server is closed (directory mode: unlocks). Idempotent. */
  release(): void
}

/** Where a domain's hub is, and how to try to become it. */
export interface Rendezvous {
  /** The fdpass address clients connect to. */
  readonly address: string
  /** Listens on the hub address if no one holds it; undefined if someone does. */
  tryClaim(options: ListenOptions): Claim | undefined
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
    tryClaim(options) {
      try {
        const server = listen(address, options)
        return { server, release() {} }
      } catch (error) {
        if (FdpassError.isInstance(error) && error.code === 'ERR_FDPASS_EADDRINUSE') return undefined
        throw error
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
  return {
    address,
    tryClaim(options) {
      let lockFd: number
      try {
        // O_CLOEXEC is added by libuv: a spawned child never inherits the lock.
        lockFd = openSync(lockPath, constants.O_RDWR | constants.O_CREAT, 0o600)
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? 'EIO'
        throw new TopologyError(`ERR_TOPOLOGY_${code}` as `ERR_TOPOLOGY_E${string}`, `cannot open ${lockPath}: ${code}`, {
          cause: error,
        })
      }
      let claimed = false
      try {
        if (!native.tryLockExclusive(lockFd)) return undefined
        // We hold the lock, so any socket file here is a dead hub's: replace it.
        try {
          unlinkSync(address)
        } catch {}
        const server = listen(address, options)
        let released = false
        claimed = true
        return {
          server,
          release() {
            if (released) return
            released = true
            // The server unlinked its socket file on close; closing the fd drops the lock.
            closeSync(lockFd)
          },
        }
      } catch (error) {
        if (error instanceof native.NativeError) {
          const name = Object.entries(osConstants.errno).find(([, value]) => value === error.errno)?.[0]
          throw new TopologyError(`ERR_TOPOLOGY_${name ?? 'EIO'}` as `ERR_TOPOLOGY_E${string}`, `flock(${lockPath}) failed`, {
            errno: -error.errno,
            syscall: 'flock',
          })
        }
        throw error
      } finally {
        if (!claimed) closeSync(lockFd)
      }
    },
  }
}
