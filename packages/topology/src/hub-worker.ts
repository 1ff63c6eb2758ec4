// The hub thread's script (a second build entry: dist/hub-worker.js, started by hub-thread.ts).
// It loads only what the hub needs and waits. Told to claim (its owner won the election), it
// listens on the hub address and runs the Hub until its owner says close or destroy. As the
// successor's standby it may also be armed: it watches the current hub's process (a pidfd)
// and claims on its own the moment that process dies, without waiting for its owner's thread.
//
// Every fd opened here (the listening socket, the peers' sockets, the pidfd, a directory-mode
// lock taken here) is closed when this thread ends, however it ends: each is registered with
// the thread's cleanup hooks. That frees the hub name when the owner's thread ends (this
// thread, a worker of that thread, ends with it). The owner still stops this thread through a
// message whenever it has a poll handle open (hub-thread.ts says why).
import { parentPort, threadId, workerData } from 'node:worker_threads'
import {
  type Channel,
  cancelCloseFdOnThreadExit,
  closeFdOnThreadExit,
  connect,
  FdpassError,
  type PeerCredentials,
} from '@ipc-pubsub/fdpass'
import { type Claim, listenHub, lockElection } from './election.js'
import { Hub } from './hub.js'
import { type ClaimRequest, type FromHubThread, serializeError, type ToHubThread } from './hub-messages.js'
import { processIdentity } from './liveness.js'
import { closeFd, pidfdOpen, setThreadName, type Watch, watchReadable } from './native.js'
import { PROTOCOL_VERSION } from './protocol.js'
import { send } from './wire.js'

/** What the hub thread is called in `top -H`, `ps -L` and /proc/<pid>/task/<tid>/comm. */
export const HUB_THREAD_NAME = 'ipc-pubsub-hub'

const port = parentPort
if (port === null) {
  throw new Error('@ipc-pubsub/topology: hub-worker.js runs in the worker thread a TopologyClient starts, not on its own')
}

// Set to 1 (and notified) once the hub is stopped: an owner that is exiting waits on it
// synchronously (hub-thread.ts), because Node must not tear this thread down with sockets open.
const stopped = (workerData as { stopped: Int32Array }).stopped

let hub: Hub | undefined
let nextAsk = 0
// Peers waiting for the owner's authorize(): seq -> verdict.
const asks = new Map<number, (ok: boolean) => void>()

function post(message: FromHubThread): void {
  port?.postMessage(message)
}

// A custom authorize is a function in the owner's thread: ask it. A peer then waits for the
// owner's event loop, so only the default (same uid) keeps joins independent of it.
function askOwner(peer: PeerCredentials): Promise<boolean> {
  const seq = ++nextAsk
  return new Promise((resolve) => {
    asks.set(seq, resolve)
    post({ type: 'authorize', seq, peer: { pid: peer.pid, uid: peer.uid, gid: peer.gid } })
  })
}

// The armed watch: the current hub's pidfd and its poll handle.
let armed: { fd: number; watch: Watch; request: ClaimRequest } | undefined

function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

/**
 * Listens and starts the Hub. `armed`: this thread claims on its own (the watched hub died),
 * so it takes the election itself (directory mode: the lock; abstract mode: the bind is it);
 * otherwise the owner holds the election and has handed it over.
 */
function claim(request: ClaimRequest, byWatch: boolean): void {
  if (hub !== undefined) {
    // Already running (an armed claim beat the owner's): the owner's claim succeeded too.
    if (!byWatch) post({ type: 'claimed', armed: false })
    return
  }
  let lock: ReturnType<typeof lockElection>
  let server: ReturnType<typeof listenHub>
  try {
    if (byWatch && request.lockPath !== undefined) {
      lock = lockElection(request.lockPath)
      if (lock === undefined) {
        post({ type: 'taken', armed: byWatch })
        return
      }
    }
    server = listenHub(request.address, request.path, request.askAuthorize ? { authorize: askOwner } : {})
  } catch (error) {
    lock?.release()
    // EADDRINUSE: another process bound the name first (between our owner's placeholder
    // closing and our bind, or before our watch fired). It won the election; nothing is wrong.
    if (FdpassError.isInstance(error) && error.code === 'ERR_FDPASS_EADDRINUSE') post({ type: 'taken', armed: byWatch })
    else post({ type: 'failed', error: serializeError(error) })
    return
  }
  const held: Claim = { server, release: () => lock?.release() }
  // An armed claim's request was made when the watch was armed: raise its epoch to now.
  const epoch = Math.max(request.hub.epoch, monotonicMicros())
  hub = new Hub(held, { ...request.hub, epoch, onError: (error) => post({ type: 'error', error: serializeError(error) }) })
  post({ type: 'claimed', armed: byWatch })
}

function disarm(): void {
  if (armed === undefined) return
  armed.watch.close()
  cancelCloseFdOnThreadExit(armed.fd)
  closeFd(armed.fd)
  armed = undefined
}

function arm(pid: number, request: ClaimRequest): void {
  disarm()
  if (hub !== undefined) return
  let fd: number
  try {
    fd = pidfdOpen(pid)
  } catch {
    // ESRCH: it has exited already. Anything else (an old kernel): no watch, the owner's
    // thread runs the election as without a standby.
    claim(request, true)
    return
  }
  closeFdOnThreadExit(fd)
  const watch = watchReadable(fd, () => {
    const current = armed
    disarm()
    if (current !== undefined) claim(current.request, true)
  })
  armed = { fd, watch, request }
}

async function stop(how: 'close' | 'destroy', leaving: string | undefined): Promise<void> {
  disarm()
  for (const resolve of asks.values()) resolve(false)
  asks.clear()
  try {
    if (hub !== undefined) await (how === 'close' ? hub.close(leaving) : hub.destroy(leaving))
  } finally {
    Atomics.store(stopped, 0, 1)
    Atomics.notify(stopped, 0)
    post({ type: 'closed' })
    // The thread ends itself: process.exit() in a worker runs its 'exit' listeners, where
    // fdpass closes every poll handle left, so no koffi callback can call into JavaScript
    // while Node stops the thread (a terminate() from outside could land in that window and
    // abort the process). setImmediate: the 'closed' message goes out first.
    setImmediate(() => process.exit(0))
  }
}

port.on('message', (message: ToHubThread) => {
  switch (message.type) {
    case 'claim':
      disarm()
      claim(message, false)
      return
    case 'arm':
      arm(message.pid, message.request)
      return
    case 'disarm':
      disarm()
      return
    case 'authorized':
      asks.get(message.seq)?.(message.ok)
      asks.delete(message.seq)
      return
    case 'close':
    case 'destroy':
      void stop(message.type, message.leaving)
      return
  }
})
/**
 * Runs the hub once on a throwaway abstract name before saying ready: listen, a Hub, one
 * node's connect, hello and welcome (with a short history to merge), destroy. A standby's real
 * claim and the survivors' hellos after it are a failover's critical path; in a fresh thread
 * V8 would compile all of that code on first use (tens of ms on a loaded 2-core machine).
 */
async function warmUp(): Promise<void> {
  let warm: Hub | undefined
  let channel: Channel | undefined
  try {
    const name = `@ipc-pubsub/1/warm-up/${process.pid}/${threadId}/${Math.random().toString(36).slice(2)}`
    warm = new Hub({ server: listenHub(name, false, {}), release() {} }, {
      id: 'warm-up-hub',
      epoch: 1,
      history: [],
      tail: 1,
      grace: 0,
      onError() {},
    })
    channel = await connect(name, { signal: AbortSignal.timeout(2000) })
    const me = processIdentity()
    const node = { id: 'warm-up-node', name: 'warm-up', ...me, endpoint: null, metadata: {} }
    const other = { ...node, id: 'warm-up-gone', pid: 1 }
    const stamp = (seq: number) => ({ epoch: 1, seq, uid: `warm-up:1:${seq}` })
    const welcomed = new Promise<void>((resolve) => channel?.once('message', () => resolve()))
    send(channel, {
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      node,
      endpoints: [],
      history: [
        { type: 'node-joined', node: other, ...stamp(1) },
        { type: 'node-left', node: other.id, reason: 'closed', ...stamp(2) },
      ],
    })
    await Promise.race([welcomed, channel.closed])
  } catch {
    // Only a warm-up.
  } finally {
    await Promise.all([channel?.destroy(), warm?.destroy()])
  }
}

void warmUp().then(() => {
  // Named once ready: a process with a thread of this name can take over the hub at once.
  setThreadName(HUB_THREAD_NAME)
  post({ type: 'ready' })
})
