import { describe, expect, it } from 'vitest'
import type { TopologyChange } from './changes.js'
import { join, type TopologyClient } from './client.js'
import { TopologyError } from './errors.js'

let counter = 0
function domain(): string {
  return `client-test-${process.pid}-${++counter}`
}

function nextChange(client: TopologyClient, predicate: (change: TopologyChange) => boolean): Promise<TopologyChange> {
  return new Promise((resolve) => {
    const listener = (change: TopologyChange) => {
      if (!predicate(change)) return
      client.off('event', listener)
      resolve(change)
    }
    client.on('event', listener)
  })
}

async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof promise === 'function' ? promise() : promise)
  } catch (error) {
    expect(TopologyError.isInstance(error)).toBe(true)
    expect((error as TopologyError).code).toBe(code)
    return
  }
  throw new Error(`expected ${code}`)
}

describe('join() arguments', () => {
  it('rejects bad options with ERR_TOPOLOGY_INVALID_ARGUMENT before doing anything', async () => {
    await expectCode(join({ domain: '' }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    await expectCode(join({ domain: 'a/b' }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    await expectCode(join({ domain: 'x'.repeat(65) }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    await expectCode(join({ domain: domain(), name: 'x'.repeat(257) }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    await expectCode(join({ domain: domain(), endpoint: '' }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    await expectCode(join({ domain: domain(), metadata: { big: 'x'.repeat(20_000) } }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    await expectCode(join({ domain: domain(), reconnectGrace: -1 }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    await expectCode(join({ domain: domain(), historyTail: 0 }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    await expectCode(join({ domain: domain(), directory: `/tmp/${'d'.repeat(120)}` }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    for (const timeout of [-1, Number.NaN, '5000', null]) {
      // biome-ignore lint/suspicious/noExplicitAny: a JavaScript caller's mistake
      await expectCode(join({ domain: domain(), timeout: timeout as any }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
    }
    // biome-ignore lint/suspicious/noExplicitAny: a JavaScript caller's mistake
    await expectCode(join({ domain: domain(), signal: {} as any }), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
  })

  it('rejects an already aborted signal with ERR_TOPOLOGY_ABORTED', async () => {
    await expectCode(join({ domain: domain(), signal: AbortSignal.abort() }), 'ERR_TOPOLOGY_ABORTED')
  })

  it('reports a directory it cannot use with an errno code', async () => {
    await expectCode(join({ domain: domain(), directory: '/proc/no-such-dir' }), 'ERR_TOPOLOGY_ENOENT')
  })
})

describe('TopologyClient in one process', () => {
  it('elects itself, reports itself and others, and endpoints, in order', async () => {
    const name = domain()
    await using a = await join({ domain: name, name: 'a', metadata: { role: 'camera' } })
    expect(a.isHub).toBe(true)
    expect(a.hub?.self).toBe(true)
    const seen: string[] = []
    a.on('event', (change) => seen.push(`${change.type}:${change.node.name}${'endpoint' in change ? `:${change.endpoint.topic}` : ''}`))
    await using b = await join({ domain: name, name: 'b' })
    expect(b.isHub).toBe(false)
    expect(b.hub?.id).toBe(a.id)
    const up = nextChange(a, (change) => change.type === 'endpoint-up')
    const endpoint = b.addEndpoint({ topic: 'frames', role: 'publisher', options: { hz: 30 } })
    expect(endpoint.id.startsWith(`${b.id}/`)).toBe(true)
    await up
    expect(a.endpoints('frames').map((e) => e.id)).toEqual([endpoint.id])
    expect(a.snapshot().nodes.map((n) => n.node.name)).toEqual(['a', 'b'])
    expect(a.snapshot().nodes[0]?.node.metadata).toEqual({ role: 'camera' })
    const down = nextChange(a, (change) => change.type === 'endpoint-down')
    expect(b.removeEndpoint(endpoint.id)).toBe(true)
    expect(b.removeEndpoint(endpoint.id)).toBe(false)
    expect(await down).toMatchObject({ type: 'endpoint-down', reason: 'removed' })
    const left = nextChange(a, (change) => change.type === 'node-down')
    await b.close()
    expect(await left).toMatchObject({ type: 'node-down', reason: 'closed' })
    expect(seen).toEqual(['node-up:a', 'node-up:b', 'endpoint-up:b:frames', 'endpoint-down:b:frames', 'node-down:b'])
  })

  it('hands the hub over on close, and the survivor keeps its state and endpoints', async () => {
    const name = domain()
    const a = await join({ domain: name, name: 'a' })
    const b = await join({ domain: name, name: 'b' })
    const c = await join({ domain: name, name: 'c' })
    const endpoint = c.addEndpoint({ topic: 't', role: 'subscriber' })
    await nextChange(b, (change) => change.type === 'endpoint-up')
    const changes: string[] = []
    b.on('event', (change) => changes.push(`${change.type}:${change.node.name}`))
    const newHub = new Promise<void>((resolve) => b.once('hub', () => resolve()))
    await a.close()
    await newHub
    // The old hub's leave, exactly once; b and c are not reported again.
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(changes).toEqual(['node-down:a'])
    expect(b.isHub || c.isHub).toBe(true)
    expect(b.snapshot().nodes.map((n) => n.node.name)).toEqual(['b', 'c'])
    expect(b.endpoints('t').map((e) => e.id)).toEqual([endpoint.id])
    await b.close()
    await c.close()
    expect(await a.closed).toBeUndefined()
  })

  it('is an async iterable of changes, ended by close()', async () => {
    const name = domain()
    const a = await join({ domain: name, name: 'a' })
    const iterator = a[Symbol.asyncIterator]()
    const first = await iterator.next()
    expect(first.value).toMatchObject({ type: 'node-up', node: { name: 'a' } })
    const b = await join({ domain: name, name: 'b' })
    expect((await iterator.next()).value).toMatchObject({ type: 'node-up', node: { name: 'b' } })
    await b.destroy()
    expect((await iterator.next()).value).toMatchObject({ type: 'node-down', node: { name: 'b' }, reason: 'exited' })
    const done = iterator.next()
    await a.close()
    expect(await done).toEqual({ value: undefined, done: true })
  })

  it('close() and destroy() are idempotent, and calls after close fail with ERR_TOPOLOGY_CLOSED', async () => {
    const a = await join({ domain: domain() })
    await Promise.all([a.close(), a.close()])
    await a.destroy()
    await a.close()
    await expectCode(() => a.addEndpoint({ topic: 't', role: 'publisher' }), 'ERR_TOPOLOGY_CLOSED')
    await expectCode(() => a.removeEndpoint('x/1'), 'ERR_TOPOLOGY_CLOSED')
    expect(a.hub).toBeNull()
  })

  it('validates endpoints', async () => {
    await using a = await join({ domain: domain() })
    // biome-ignore lint/suspicious/noExplicitAny: a JavaScript caller's mistake
    const bad: any[] = [null, { topic: '', role: 'publisher' }, { topic: 't', role: 'both' }, { topic: 't', role: 'publisher', options: 5 }]
    for (const endpoint of bad) await expectCode(() => a.addEndpoint(endpoint), 'ERR_TOPOLOGY_INVALID_ARGUMENT')
  })

  it('destroy(err) settles closed with the error and fails a pending iterator', async () => {
    const a = await join({ domain: domain() })
    const iterator = a[Symbol.asyncIterator]()
    await iterator.next()
    const pending = iterator.next()
    const error = new Error('boom')
    await a.destroy(error)
    expect(await a.closed).toBe(error)
    await expect(pending).rejects.toBe(error)
  })
})
