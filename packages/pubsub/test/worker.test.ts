// A pubsub node in a worker thread (issue 12, item 3). It connects (first, so it holds the hub
// too), publishes to a subscriber in another process and receives from a publisher in
// another process; then it crashes (an uncaught error) or is terminate()d. The other
// processes must see it leave (their publisherCount / subscriberCount drop), elect a new hub
// and keep exchanging messages, and nothing the thread opened may stay open in this process.
//
// The worker runs the built package (dist/): on Node 20 a worker thread cannot use the
// parent's TypeScript loader. This (main) thread loads the package too (TRANSPORTS below):
// koffi 3.3.4 crashes a process whose only koffi user is a worker that is terminated with a
// socket open (see the topology README, "Worker threads").
import { readdirSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { afterAll, describe, expect, it } from 'vitest'
import { TRANSPORTS, type TransportName } from '../src/index.ts'
import { killAll, Peer, uniqueDomain } from './helpers.ts'

const PUBSUB_DIST = new URL('../dist/index.js', import.meta.url).href
const MESSAGES = 50
const SIZE = 4096

// The worker's script (CommonJS, as eval workers are; the package is loaded with import()).
// Messages it publishes follow the fixture's pattern (test/fixtures/peer.ts `fill`), so the
// subscriber in the other process checks every byte. To the parent: ready { id, isHub },
// published { lastSeq }, received { count, lost, bad }, loaded (with workerData.loadOnly: it
// only loads the package, then ends). From the parent: publish { count }, throw (an uncaught
// error in the thread).
const SCRIPT = `
const { parentPort, workerData } = require('node:worker_threads')
if (workerData.loadOnly) import(workerData.pubsub).then(() => parentPort.postMessage({ type: 'loaded' }))
else run()
function run() {
function fill(bytes, seq) {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seq * 131 + i) & 0xff
}
function check(bytes, seq) {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== ((seq * 131 + i) & 0xff)) return false
  return true
}
import(workerData.pubsub).then(async ({ connect }) => {
  const node = await connect({ domain: workerData.domain, name: 'in-a-worker', transport: workerData.transport })
  node.on('error', () => {})
  const pub = node.publisher('from-worker')
  const sub = node.subscribe('to-worker', { policy: 'wait' })
  let count = 0
  let lost = 0
  let bad = 0
  void (async () => {
    for await (const message of sub) {
      count++
      lost += message.lost
      if (!check(message.data, message.seq)) bad++
      message.release()
      parentPort.postMessage({ type: 'received', count, lost, bad })
    }
  })()
  parentPort.on('message', async (message) => {
    if (message.cmd === 'publish') {
      const data = new Uint8Array(workerData.size)
      for (let published = 0; published < message.count; ) {
        fill(data, pub.seq + 1)
        if (pub.publish(data)) published++
        else await pub.ready()
      }
      parentPort.postMessage({ type: 'published', lastSeq: pub.seq })
    } else if (message.cmd === 'throw') {
      setImmediate(() => {
        throw new Error('a crash in a worker thread (test)')
      })
    }
  })
  parentPort.postMessage({ type: 'ready', id: node.id, isHub: node.topology.isHub })
})
}
`

interface FromWorker {
  type: string
  [key: string]: unknown
}

function startWorker(data: Record<string, unknown>): { worker: Worker; next: (type: string, match?: (m: FromWorker) => boolean) => Promise<FromWorker>; exited: Promise<number> } {
  const worker = new Worker(SCRIPT, { eval: true, workerData: data })
  const messages: FromWorker[] = []
  const waiters = new Set<() => void>()
  worker.on('message', (message: FromWorker) => {
    messages.push(message)
    for (const waiter of [...waiters]) waiter()
  })
  // The crash case: the thread's uncaught error arrives here, and must not fail this process.
  worker.on('error', () => {})
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve))
  const next = (type: string, match: (m: FromWorker) => boolean = () => true): Promise<FromWorker> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`worker: no '${type}' within 30 s`)), 30_000)
      const check = () => {
        const found = messages.find((m) => m.type === type && match(m))
        if (found !== undefined) done(undefined, found)
      }
      function done(error: Error | undefined, found?: FromWorker): void {
        clearTimeout(timer)
        waiters.delete(check)
        if (error) reject(error)
        else resolve(found as FromWorker)
      }
      waiters.add(check)
      void exited.then((code) => done(new Error(`worker exited (${code}) before '${type}'`)))
      check()
    })
  return { worker, next, exited }
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length
}

/** This process's fd count once it holds still below `ceiling` (at most 5 s). */
async function settledFds(ceiling: number): Promise<number> {
  let count = fdCount()
  for (let i = 0; i < 250 && count > ceiling; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    count = fdCount()
  }
  return count
}

afterAll(killAll)

describe.each(TRANSPORTS)('a pubsub node in a worker thread (%s)', (transport: TransportName) => {
  let warmedUp = false

  it.each(['throw', 'terminate'] as const)(
    'publishes and subscribes across processes; after a %s, the others see it leave and carry on, and no fd is left',
    async (how) => {
      // The first worker of a process leaves fds that Node keeps for the next ones: one
      // worker loads the package and ends before the count is taken.
      if (!warmedUp) {
        const warm = startWorker({ pubsub: PUBSUB_DIST, loadOnly: true })
        await warm.next('loaded')
        await warm.exited
        warmedUp = true
      }
      const [subscriber, publisher] = await Promise.all([
        Peer.start('subscriber', [], { transport }),
        Peer.start('publisher', [], { transport }),
      ])
      // Taken with the other processes running (their stdio and IPC sockets are ours too).
      const before = await settledFds(0)
      const domain = uniqueDomain(`worker-${how}`)
      const inThread = startWorker({ pubsub: PUBSUB_DIST, domain, transport, size: SIZE })
      const joined = await inThread.next('ready')
      expect(joined.isHub).toBe(true)
      await subscriber.connect(domain)
      await publisher.connect(domain)

      // The thread publishes to a subscriber in another process...
      const subKey = await subscriber.subscribe('from-worker', { policy: 'wait' })
      expect(await subscriber.request('wait-publishers', { key: subKey, count: 1 })).toBe(1)
      inThread.worker.postMessage({ cmd: 'publish', count: MESSAGES })
      await inThread.next('published')
      const deadline = Date.now() + 30_000
      while ((await subscriber.stats(subKey)).received < MESSAGES && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      expect(await subscriber.stats(subKey)).toMatchObject({ received: MESSAGES, lost: 0, bad: 0, outOfOrder: 0 })
      // ...and receives from a publisher in another process.
      const pubKey = await publisher.publisher('to-worker')
      expect(await publisher.request('wait-subscribers', { key: pubKey, count: 1 })).toBe(1)
      await publisher.publish(pubKey, SIZE, MESSAGES, { lossless: true })
      expect(await inThread.next('received', (m) => m.count === MESSAGES)).toMatchObject({ lost: 0, bad: 0 })

      const marks = { subscriber: subscriber.countEvents.length, publisher: publisher.countEvents.length }
      if (how === 'terminate') await inThread.worker.terminate()
      else inThread.worker.postMessage({ cmd: 'throw' })
      expect(await inThread.exited).toBe(1)

      // The others see it leave...
      const dropped = (peer: Peer, key: string, kind: 'publishers' | 'subscribers', from: number) => () =>
        peer.countEvents.slice(from).some((event) => event.key === key && event.kind === kind && event.count === 0)
      await subscriber.waitFor(dropped(subscriber, subKey, 'publishers', marks.subscriber), 'publisherCount 0 on from-worker')
      await publisher.waitFor(dropped(publisher, pubKey, 'subscribers', marks.publisher), 'subscriberCount 0 on to-worker')
      expect(await subscriber.request('counts-of', { key: subKey })).toBe(0)
      expect(await publisher.request('counts-of', { key: pubKey })).toBe(0)
      // ...and keep working: a new hub between them, and messages flow.
      const onward = await publisher.publisher('onward')
      const onwardSub = await subscriber.subscribe('onward', { policy: 'wait' })
      expect(await publisher.request('wait-subscribers', { key: onward, count: 1 })).toBe(1)
      await publisher.publish(onward, SIZE, MESSAGES, { lossless: true })
      while ((await subscriber.stats(onwardSub)).received < MESSAGES && Date.now() < deadline + 30_000) {
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      expect(await subscriber.stats(onwardSub)).toMatchObject({ received: MESSAGES, lost: 0, bad: 0 })
      // Its node leaves the topology too: at once after a crash (its 'exit' listener says so),
      // after the new hub's reconnect grace (1 s) after terminate() (no code of it runs then).
      for (const peer of [subscriber, publisher]) {
        for (let i = 0; (await peer.request<string[]>('nodes')).includes(joined.id as string); i++) {
          if (i > 500) throw new Error(`${peer.label} still sees the worker's node`)
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
      }

      // Everything the thread opened (sockets, segments, pools, rings, doorbells) is closed.
      expect(await settledFds(before)).toBe(before)
      await Promise.all([subscriber.request('close'), publisher.request('close')])
      await killAll()
    },
  )
})
