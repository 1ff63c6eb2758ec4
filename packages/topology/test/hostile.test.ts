// A raw fdpass client on the hub's address that speaks garbage is disconnected (and reported as
// a protocol error by the hub), while the hub process keeps running, keeps its epoch, and the
// other nodes keep working. Nothing a hostile peer sends makes the hub leak an fd.
import { closeSync, openSync } from 'node:fs'
import { type Channel, connect } from '@ipc-pubsub/fdpass'
import { Segment } from '@ipc-pubsub/shm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { processIdentity } from '../src/liveness.ts'
import { PROTOCOL_VERSION } from '../src/protocol.ts'
import { agreed, type NodeProcess, spawnNode, stopAll, uniqueDomain } from './helpers.ts'

/** Well below the hub's 5 s hello timeout: a close within it is the hub's own doing. */
const EVICTION_WAIT_MS = 3000

afterAll(stopAll)

const text = (value: unknown): Uint8Array => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value))

function nodeInfo(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const me = processIdentity()
  return {
    id: `raw${Math.random().toString(16).slice(2, 10)}`,
    name: 'raw',
    pid: me.pid,
    startTime: me.startTime,
    pidNamespace: me.pidNamespace,
    endpoint: null,
    metadata: {},
    ...overrides,
  }
}

function hello(node: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'hello', protocol: PROTOCOL_VERSION, node, endpoints: [], history: [], ...extra }
}

interface Frame {
  data: Uint8Array
  /** Opened for the send, closed after it. */
  fds?: () => number[]
}

interface Case {
  name: string
  /** Sent first; the hub must accept them (a valid hello) before the garbage. */
  valid?: () => Record<string, unknown>
  garbage: () => Frame[]
  /** The hub's error message must match. */
  error: RegExp
  code?: string
}

const cases: Case[] = [
  { name: 'non-JSON text', garbage: () => [{ data: text('this is {not json') }], error: /not valid JSON/ },
  { name: 'invalid UTF-8', garbage: () => [{ data: new Uint8Array([0xff, 0xfe, 0x7b]) }], error: /not valid UTF-8/ },
  { name: 'a JSON array', garbage: () => [{ data: text([1, 2, 3]) }], error: /message must be an object/ },
  { name: 'JSON null', garbage: () => [{ data: text('null') }], error: /message must be an object/ },
  { name: 'a JSON number', garbage: () => [{ data: text('42') }], error: /message must be an object/ },
  { name: 'an unknown message type', garbage: () => [{ data: text({ type: 'welcome', hub: 'x' }) }], error: /not a client message type/ },
  { name: 'a hello with no node', garbage: () => [{ data: text({ type: 'hello', protocol: PROTOCOL_VERSION }) }], error: /node must be an object/ },
  {
    name: 'a hello whose history is not an array',
    garbage: () => [{ data: text(hello(nodeInfo(), { history: { 0: 'x' } })) }],
    error: /history must be an array/,
  },
  {
    name: 'a hello with a bad id',
    garbage: () => [{ data: text(hello(nodeInfo({ id: '../../etc passwd' }))) }],
    error: /node\.id must be/,
  },
  {
    name: 'a hello with an over-long id',
    garbage: () => [{ data: text(hello(nodeInfo({ id: 'x'.repeat(65) }))) }],
    error: /node\.id must be/,
  },
  {
    name: 'a hello of another protocol version',
    garbage: () => [{ data: text({ ...hello(nodeInfo()), protocol: PROTOCOL_VERSION + 1 }) }],
    error: /protocol/,
    code: 'ERR_TOPOLOGY_VERSION',
  },
  {
    name: 'a hello claiming another pid',
    garbage: () => [{ data: text(hello(nodeInfo({ pid: 1 }))) }],
    error: /hello claims pid 1/,
  },
  { name: 'a message before hello', garbage: () => [{ data: text({ type: 'bye' }) }], error: /expected hello, got bye/ },
  {
    name: "a giant 'large' envelope without an fd",
    garbage: () => [{ data: text({ type: 'large', bytes: 64 * 1024 * 1024 }) }],
    error: /exactly one file descriptor/,
  },
  {
    name: "a 'large' envelope above the size limit",
    garbage: () => [{ data: text({ type: 'large', bytes: 2 ** 40 }) }],
    error: /"large".bytes must be/,
  },
  {
    name: "a 'large' envelope whose memfd is shorter than it says",
    garbage: () => {
      const segment = Segment.create(16)
      return [
        {
          data: text({ type: 'large', bytes: 1_000_000 }),
          fds: () => {
            const fd = segment.fd
            queueMicrotask(() => segment.close())
            return [fd]
          },
        },
      ]
    },
    error: /at least "bytes" bytes/,
  },
  {
    name: "a 'large' envelope carrying a directory fd",
    garbage: () => [
      {
        data: text({ type: 'large', bytes: 10 }),
        fds: () => {
          const fd = openSync('/', 'r')
          queueMicrotask(() => closeSync(fd))
          return [fd]
        },
      },
    ],
    error: /regular file/,
  },
  {
    name: "a plain message with an fd attached",
    garbage: () => [
      {
        data: text(hello(nodeInfo())),
        fds: () => {
          const fd = openSync('/dev/null', 'r')
          queueMicrotask(() => closeSync(fd))
          return [fd]
        },
      },
    ],
    error: /only a "large" envelope may carry a file descriptor/,
  },
  {
    name: 'a second hello after a valid one',
    valid: () => hello(nodeInfo()),
    garbage: () => [{ data: text(hello(nodeInfo())) }],
    error: /a second hello/,
  },
  {
    name: "an endpoint-add for another node's endpoint after a valid hello",
    valid: () => hello(nodeInfo()),
    garbage: () => [
      {
        data: text({
          type: 'endpoint-add',
          endpoint: { id: 'someoneelse/1', node: 'someoneelse', topic: 't', role: 'publisher', options: {} },
        }),
      },
    ],
    error: /sender's own id/,
  },
  {
    name: 'non-JSON after a valid hello',
    valid: () => hello(nodeInfo()),
    garbage: () => [{ data: text('}{') }],
    error: /not valid JSON/,
  },
]

describe('hostile raw clients on the hub address', () => {
  const domain = uniqueDomain('hostile')
  const address = `@ipc-pubsub/1/${process.getuid?.()}/${domain}`
  let hub: NodeProcess
  let a: NodeProcess
  let b: NodeProcess
  let hubInfo: { id: string; epoch: number }
  let hubFds: { fds: number; sockets: number }
  let round = 0

  beforeAll(async () => {
    hub = spawnNode('hub', { join: { domain, name: 'hub' } })
    a = spawnNode('a')
    b = spawnNode('b')
    await Promise.all([hub.ready, a.ready, b.ready])
    const joined = await hub.joined()
    expect(joined.snapshot.isHub).toBe(true)
    hubInfo = { id: joined.id, epoch: joined.snapshot.hub?.epoch as number }
    await a.join({ join: { domain, name: 'a' } })
    await b.join({ join: { domain, name: 'b' } })
    await agreed([hub, a, b], [hub.id as string, a.id as string, b.id as string])
    const counts = await hub.counts(false)
    hubFds = { fds: counts.fds, sockets: counts.sockets }
  })

  /** The domain still works: a registers an endpoint, b and the hub see it; the hub did not change. */
  async function stillWorking(): Promise<void> {
    const topic = `alive-${++round}`
    const marks = [hub.log.length, b.log.length]
    const endpoint = await a.addEndpoint(topic)
    await hub.waitForChange((change) => change.type === 'endpoint-up' && change.endpoint === endpoint, `endpoint ${topic} at the hub`, marks[0])
    await b.waitForChange((change) => change.type === 'endpoint-up' && change.endpoint === endpoint, `endpoint ${topic} at b`, marks[1])
    for (const node of [hub, a, b]) {
      const snapshot = await node.snapshot()
      expect(snapshot.hub, `${node.label}: the same hub`).toMatchObject(hubInfo)
      expect(snapshot.nodes.map((each) => each.id).sort()).toEqual([hub.id, a.id, b.id].sort())
    }
    expect(hub.alive).toBe(true)
  }

  async function evicted(channel: Channel): Promise<Error | undefined | 'still open'> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<'still open'>((resolve) => {
      timer = setTimeout(() => resolve('still open'), EVICTION_WAIT_MS)
    })
    const result = await Promise.race([channel.closed, timeout])
    clearTimeout(timer)
    return result
  }

  it.each(cases)('$name: the sender is disconnected, the others keep working', async ({ valid, garbage, error, code }) => {
    const mark = hub.log.length
    const marks = [a.log.length, b.log.length]
    const raw = await connect(address)
    let rawId: string | undefined
    if (valid !== undefined) {
      const message = valid()
      rawId = (message.node as { id: string }).id
      raw.send(text(message))
      // Accepted: a real node for a moment; everyone sees it come up.
      for (const [i, node] of [a, b].entries()) {
        await node.waitForChange((change) => change.type === 'node-up' && change.node === rawId, 'node-up of the raw client', marks[i])
      }
    }
    for (const frame of garbage()) raw.send(frame.data, frame.fds?.() ?? [])
    const reason = await evicted(raw)
    expect(reason).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
    await raw.destroy()

    // The hub reported why (a protocol error, not the hello timeout).
    await hub.waitFor(() => hub.log.slice(mark).some((entry) => entry.type === 'error'), 'the hub error report')
    const errors = hub.log.slice(mark).filter((entry) => entry.type === 'error')
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ code: code ?? 'ERR_TOPOLOGY_PROTOCOL', message: expect.stringMatching(error) })

    if (rawId !== undefined) {
      // A node that was accepted and then evicted goes down as 'evicted'.
      for (const [i, node] of [a, b].entries()) {
        const down = await node.waitForChange((change) => change.type === 'node-down' && change.node === rawId, 'node-down of the raw client', marks[i])
        expect(down.change.reason).toBe('evicted')
      }
    } else {
      // Never accepted: nobody heard of it.
      for (const [i, node] of [a, b].entries()) expect(node.log.slice(marks[i])).toEqual([])
    }
    await stillWorking()
  })

  it('the hub holds no fd of any hostile connection or frame afterwards', async () => {
    const after = await hub.counts(true, hubFds)
    expect({ fds: after.fds, sockets: after.sockets }).toEqual(hubFds)
    expect(hub.alive).toBe(true)
  })
})

// Well-formed hellos whose content lies. Each runs in a domain of its own, since the damage,
// if the hub fell for the lie, would last.
describe('hostile hellos that are well-formed but lie', () => {
  // Three processes per test, all started up front (in parallel).
  const labels = ['epoch', 'left', 'hijack'] as const
  const domains = new Map(labels.map((label) => [label, uniqueDomain(`lie-${label}`)]))
  const trios = new Map<string, NodeProcess[]>()
  beforeAll(async () => {
    for (const label of labels) {
      const domain = domains.get(label) as string
      trios.set(label, [spawnNode(`${label}-hub`, { join: { domain, name: 'hub' } }), spawnNode(`${label}-a`), spawnNode(`${label}-b`)])
    }
    await Promise.all([...trios.values()].flat().map((node) => node.ready))
  })

  /** The test's hub and two nodes joined in their own domain, plus a raw client that collects what it receives. */
  async function domainWithRaw(label: (typeof labels)[number]) {
    const domain = domains.get(label) as string
    const [hub, a, b] = trios.get(label) as [NodeProcess, NodeProcess, NodeProcess]
    const joined = await hub.joined()
    await a.join({ join: { domain, name: 'a' } })
    await b.join({ join: { domain, name: 'b' } })
    await agreed([hub, a, b], [joined.id, a.id as string, b.id as string])
    const raw = await connect(`@ipc-pubsub/1/${process.getuid?.()}/${domain}`)
    const received: { type?: string; [key: string]: unknown }[] = []
    raw.on('message', ({ data }) => received.push(JSON.parse(Buffer.from(data).toString())))
    return { hub, a, b, raw, received, hubInfo: { id: joined.id, epoch: joined.snapshot.hub?.epoch as number } }
  }

  /** Waits until the raw client got a message of `type` or was disconnected. */
  async function answer(raw: Channel, received: { type?: string }[], type: string): Promise<'received' | 'closed'> {
    for (let i = 0; i < 300; i++) {
      if (received.some((message) => message.type === type)) return 'received'
      if (raw.state === 'closed') return 'closed'
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    throw new Error(`neither a ${type} nor a disconnect`)
  }

  // A hub that took the epoch would move to epoch + 1 = 2**53, which no client accepts: the
  // whole domain would churn (disconnect, rejoin under a new id) for as long as the hub lives.
  it('a hello whose history carries an epoch at the safe-integer limit does not break the domain', async () => {
    const { hub, a, b, raw, hubInfo } = await domainWithRaw('epoch')
    const ghost = nodeInfo({ id: 'ghost', pid: 999_999 })
    const forged = { type: 'node-joined', epoch: Number.MAX_SAFE_INTEGER, seq: 1, uid: 'x:1:1', node: ghost }
    raw.send(text(hello(nodeInfo(), { history: [forged] })))
    // Whatever the hub does with the lie, the others stay synced with it and keep working.
    const endpoint = await a.addEndpoint('after-the-lie')
    await b.waitForChange((change) => change.type === 'endpoint-up' && change.endpoint === endpoint, 'endpoint-up at b', 0, 1500)
    for (const node of [hub, a, b]) {
      const snapshot = await node.snapshot()
      expect(snapshot.hub?.id).toBe(hubInfo.id)
      expect(Number.isSafeInteger(snapshot.hub?.epoch)).toBe(true)
      expect(node.log.filter((entry) => entry.type === 'rejoin')).toEqual([])
    }
    await raw.destroy()
  })

  // The hub knows first-hand that the node is connected: a history saying it left is stale
  // (or a lie). Taken as true, the node would be down everywhere while it stays connected,
  // and it would never be told to rejoin.
  it('a hello whose history says a connected node left does not take that node down', async () => {
    const { hub, a, b, raw, received } = await domainWithRaw('left')
    const marks = [hub.log.length, b.log.length]
    const forged = { type: 'node-left', epoch: 1, seq: 1, uid: 'x:1:1', node: a.id, reason: 'closed' }
    raw.send(text(hello(nodeInfo(), { history: [forged] })))
    await answer(raw, received, 'welcome')
    await raw.destroy()
    // a is alive and connected: nobody may see it go down.
    const snapshots = await Promise.all([hub.snapshot(), b.snapshot()])
    for (const snapshot of snapshots) expect(snapshot.nodes.map((node) => node.id)).toContain(a.id)
    expect(hub.changes().slice(marks[0]).filter(({ change }) => change.node === a.id)).toEqual([])
    expect(b.changes().slice(marks[1]).filter(({ change }) => change.node === a.id)).toEqual([])
  })

  // Only the node's own process may take over its id (a reconnect racing the old connection's
  // close); taken from anyone, the hub would drop the real node's connection and welcome the
  // impersonator.
  it("a hello that claims a connected node's id is refused, and that node keeps its connection", async () => {
    const { a, raw, received } = await domainWithRaw('hijack')
    const mark = a.log.length
    raw.send(text(hello(nodeInfo({ id: a.id }))))
    expect(await answer(raw, received, 'welcome')).toBe('closed')
    // The real node never lost its hub (a reconnect would show up as another 'hub' event).
    expect(a.log.slice(mark).filter((entry) => entry.type === 'hub')).toEqual([])
    await raw.destroy()
  })
})
