// Two pubsub nodes in this process (a publishing one and a subscribing one), joined to a
// domain of their own: queue policies, back-pressure, message lifetime, the callback and
// iterator styles, argument checks and the closed state.
import { setImmediate as tick } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Message, PubSubError, type PubSubErrorCode, type PubSubNode, type Subscription } from './index.js'

const domain = `ut-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
let topicCounter = 0
/** A topic no other test uses, so publishers and subscriptions never cross tests. */
const freshTopic = (tag: string) => `${tag}-${++topicCounter}`

/**
 * Waits until `predicate` holds, checking every few ms. The deadline only turns a hang into a
 * readable failure; no assertion depends on how long anything took.
 */
async function until(predicate: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

function expectCode(fn: () => unknown, code: PubSubErrorCode): void {
  expect(fn).toThrow(expect.objectContaining({ name: 'PubSubError', code }))
}

async function expectRejectCode(promise: Promise<unknown>, code: PubSubErrorCode): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(PubSubError.isInstance(error), `expected a rejection with ${code}`).toBe(true)
  expect((error as PubSubError).code).toBe(code)
}

/** The next message from an iterator (it must not have ended). */
async function next(iterator: AsyncIterator<Message>): Promise<Message> {
  const result = await iterator.next()
  expect(result.done).toBe(false)
  return result.value as Message
}

/** Every queued message of `sub`, taken without waiting: its queue is all there is. */
async function drainQueued(sub: Subscription): Promise<Message[]> {
  const iterator = sub[Symbol.asyncIterator]()
  const messages: Message[] = []
  for (let n = sub.queued; n > 0; n--) messages.push(await next(iterator))
  return messages
}

let pubNode: PubSubNode
let subNode: PubSubNode

beforeAll(async () => {
  pubNode = await connect({ domain, name: 'unit-publisher' })
  subNode = await connect({ domain, name: 'unit-subscriber' })
})

afterAll(async () => {
  await subNode?.close()
  await pubNode?.close()
})

describe('delivery between two nodes', () => {
  it('publish() returns false with no subscriber (no seq spent), true with one', async () => {
    const topic = freshTopic('nobody')
    const pub = pubNode.publisher(topic)
    expect(pub.subscriberCount).toBe(0)
    expect(pub.writable).toBe(false)
    expect(pub.publish('into the void')).toBe(false)
    expect(pub.seq).toBe(0)

    const sub = subNode.subscribe(topic)
    await pub.waitForSubscribers()
    expect(pub.subscriberCount).toBe(1)
    expect(pub.publish('hello')).toBe(true)
    expect(pub.seq).toBe(1)
    const message = await next(sub[Symbol.asyncIterator]())
    expect(message.seq).toBe(1)
    expect(message.lost).toBe(0)
    expect(message.publisher).toBe(pub.id)
    expect(message.topic).toBe(topic)
    expect(message.text()).toBe('hello')
    message.release()
    await sub.close()
    await pub.close()
  })

  it('strings travel as UTF-8; views of any type arrive byte for byte', async () => {
    const topic = freshTopic('utf8')
    const sub = subNode.subscribe(topic)
    const pub = pubNode.publisher(topic)
    await pub.waitForSubscribers()
    const text = 'héllo wörld ✓ 猫 🐱 a\u0300'
    const words = new Uint16Array([1, 0xbeef, 0xffff])
    const empty = new Uint8Array(0)
    expect(pub.publish(text)).toBe(true)
    expect(pub.publish(words)).toBe(true)
    expect(pub.publish(empty)).toBe(true)
    expect(pub.publish('')).toBe(true)

    const iterator = sub[Symbol.asyncIterator]()
    const first = await next(iterator)
    expect(first.text()).toBe(text)
    expect(Buffer.from(first.data).equals(Buffer.from(text, 'utf8'))).toBe(true)
    const second = await next(iterator)
    expect(Buffer.from(second.data).equals(Buffer.from(words.buffer))).toBe(true)
    const third = await next(iterator)
    expect(third.data.byteLength).toBe(0)
    const fourth = await next(iterator)
    expect(fourth.text()).toBe('')
    for (const message of [first, second, third, fourth]) message.release()
    await sub.close()
    await pub.close()
  })

  it('segment transport: msg.data after release() reads zeros instead of crashing; release is idempotent', async () => {
    const topic = freshTopic('release')
    await using segmentNode = await connect({ domain, name: 'unit-segment-publisher', transport: 'segment' })
    const sub = subNode.subscribe(topic)
    const pub = segmentNode.publisher(topic)
    expect(pub.transport).toBe('segment')
    await pub.waitForSubscribers()
    const payload = new Uint8Array(10_000).fill(0xab)
    pub.publish(payload)
    const message = await next(sub[Symbol.asyncIterator]())
    const data = message.data
    expect(data.every((byte) => byte === 0xab)).toBe(true)
    expect(sub.held).toBe(1)
    message.release()
    expect(message.released).toBe(true)
    expect(sub.held).toBe(0)
    expect(data.byteLength).toBe(payload.byteLength)
    expect(data.every((byte) => byte === 0)).toBe(true)
    expect(message.data.every((byte) => byte === 0)).toBe(true)
    // Writing to the dead view goes nowhere, and must not crash either.
    data[0] = 1
    message.release()
    await sub.close()
    await pub.close()
  })

  it('spinMicroseconds on both ends: a lossless stream with a tiny window flows, in order, and both sides go back to sleep', async () => {
    const topic = freshTopic('spin')
    const sub = subNode.subscribe(topic, { policy: 'wait', queueSize: 2, spinMicroseconds: 200 })
    const pub = pubNode.publisher(topic, { spinMicroseconds: 200 })
    expect(sub.spinMicroseconds).toBe(200)
    await pub.waitForSubscribers()
    const seqs: number[] = []
    sub.on('message', (message) => {
      seqs.push(message.seq)
      message.release()
    })
    for (let n = 1; n <= 200; n++) while (!pub.publish(`m${n}`)) await pub.ready()
    await until(() => seqs.length === 200, 'all 200 messages')
    expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
    for (const bad of [-1, Number.NaN, 2_000_000, '5']) {
      expectCode(() => pubNode.publisher(topic, { spinMicroseconds: bad as number }), 'ERR_PUBSUB_INVALID_ARGUMENT')
      expectCode(() => subNode.subscribe(topic, { spinMicroseconds: bad as number }), 'ERR_PUBSUB_INVALID_ARGUMENT')
    }
    await sub.close()
    await pub.close()
  })

  it('pool transport: msg.data after release() may show newer pool bytes, never crashes; zeros once the pool is unmapped', async () => {
    const topic = freshTopic('release-pool')
    const sub = subNode.subscribe(topic)
    const pub = pubNode.publisher(topic)
    expect(pub.transport).toBe('pool')
    await pub.waitForSubscribers()
    pub.publish(new Uint8Array(10_000).fill(0xab))
    const iterator = sub[Symbol.asyncIterator]()
    const first = await next(iterator)
    const data = first.data
    expect(data.every((byte) => byte === 0xab)).toBe(true)
    first.release()
    first.release()
    expect(sub.held).toBe(0)
    // The block is free again: the next message of the same size reuses it.
    pub.publish(new Uint8Array(10_000).fill(0xcd))
    const second = await next(iterator)
    expect(second.data.every((byte) => byte === 0xcd)).toBe(true)
    expect(data.byteLength).toBe(10_000)
    expect(data.every((byte) => byte === 0xab || byte === 0xcd)).toBe(true)
    second.release()
    // The publisher closes: once nothing of its pool is held, the subscriber unmaps it and
    // stale views read zeros.
    await pub.close()
    await until(() => data.every((byte) => byte === 0), 'the pool to be unmapped')
    await sub.close()
  })

  it("callback style: sub.on('message') gets messages queued before the listener, in order, then live ones", async () => {
    const topic = freshTopic('callback')
    const sub = subNode.subscribe(topic)
    const pub = pubNode.publisher(topic)
    await pub.waitForSubscribers()
    for (let n = 1; n <= 3; n++) pub.publish(`m${n}`)
    await until(() => sub.queued === 3, 'three queued messages')

    const received: { seq: number; text: string }[] = []
    sub.on('message', (message) => {
      received.push({ seq: message.seq, text: message.text() })
      message.release()
    })
    await until(() => received.length === 3, 'the queued messages at the listener')
    expect(sub.queued).toBe(0)
    for (let n = 4; n <= 5; n++) pub.publish(`m${n}`)
    await until(() => received.length === 5, 'the live messages at the listener')
    expect(received).toEqual([1, 2, 3, 4, 5].map((seq) => ({ seq, text: `m${seq}` })))
    expect(sub.held).toBe(0)
    await sub.close()
    await pub.close()
  })

  it('breaking out of for await closes the subscription; the publisher sees it go', async () => {
    const topic = freshTopic('break')
    const sub = subNode.subscribe(topic)
    const pub = pubNode.publisher(topic)
    await pub.waitForSubscribers()
    expect(pub.subscriberCount).toBe(1)
    pub.publish('one')
    pub.publish('two')
    for await (const message of sub) {
      expect(message.text()).toBe('one')
      message.release()
      break
    }
    expect(await sub.closed).toBeUndefined()
    expect(sub.queued).toBe(0)
    await until(() => pub.subscriberCount === 0, 'subscriberCount 0')
    expect(pub.publish('three')).toBe(false)
    await pub.close()
  })

  it('one node can publish to its own subscription', async () => {
    const topic = freshTopic('self')
    const sub = pubNode.subscribe(topic)
    const pub = pubNode.publisher(topic)
    await pub.waitForSubscribers()
    await sub.waitForPublishers()
    expect(sub.publisherCount).toBe(1)
    const iterator = sub[Symbol.asyncIterator]()
    for (let n = 1; n <= 3; n++) expect(pub.publish(`self ${n}`)).toBe(true)
    for (let n = 1; n <= 3; n++) {
      const message = await next(iterator)
      expect(message).toMatchObject({ seq: n, lost: 0, publisher: pub.id })
      expect(message.text()).toBe(`self ${n}`)
      message.release()
    }
    await sub.close()
    await pub.close()
  })
})

describe('queue policies', () => {
  it("'drop-oldest', consumer not reading: at most queueSize messages wait; received + lost adds up to the last seq", async () => {
    const topic = freshTopic('drop-oldest')
    const queueSize = 2
    const idle = subNode.subscribe(topic, { policy: 'drop-oldest', queueSize })
    // A lossless, always-reading companion paces the publisher: once its credit for a message
    // is back, the frames of that publish (both subscriptions') have been read by subNode.
    const pacer = subNode.subscribe(topic, { policy: 'wait', queueSize: 1 })
    pacer.on('message', (message) => message.release())
    const pub = pubNode.publisher(topic)
    await pub.waitForSubscribers({ count: 2 })

    const total = 50
    for (let n = 1; n <= total; n++) {
      while (!pub.publish(`m${n}`)) await pub.ready()
    }
    await pub.ready()
    expect(pub.seq).toBe(total)

    expect(idle.queued).toBeLessThanOrEqual(queueSize)
    const messages = await drainQueued(idle)
    expect(messages.length).toBeGreaterThan(0)
    expect(messages.length).toBeLessThanOrEqual(queueSize)
    const seqs = messages.map((message) => message.seq)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    const last = seqs.at(-1) as number
    expect(last).toBeLessThanOrEqual(total)
    // Every seq up to the last is accounted for: received, or counted in a `lost`.
    const accounted = messages.reduce((sum, message) => sum + 1 + message.lost, 0)
    expect(accounted).toBe(last)
    // Far more were published than fit: the queue really dropped some.
    expect(messages.reduce((sum, message) => sum + message.lost, 0)).toBeGreaterThan(0)
    for (const message of messages) {
      expect(message.text()).toBe(`m${message.seq}`)
      message.release()
    }
    await idle.close()
    await pacer.close()
    await pub.close()
  })

  it("'drop-oldest': `lost` stays exact when the publisher closes while its messages are queued (issue 12, item 1)", async () => {
    // Both cases: a publisher on the subscribing node itself, and one on another node.
    for (const publishing of [subNode, pubNode]) {
      const topic = freshTopic('lost-after-close')
      const sub = subNode.subscribe(topic, { policy: 'drop-oldest', queueSize: 4 })
      // A lossless companion paces the publisher (see the test above): every message reaches sub.
      const pacer = subNode.subscribe(topic, { policy: 'wait', queueSize: 1 })
      pacer.on('message', (message) => message.release())
      const pub = publishing.publisher(topic)
      await pub.waitForSubscribers({ count: 2 })
      const iterator = sub[Symbol.asyncIterator]()
      pub.publish('m1')
      const first = await next(iterator)
      expect(first).toMatchObject({ seq: 1, lost: 0 })
      first.release()
      // 20 more, not consumed: the queue of 4 drops the oldest 16.
      for (let n = 2; n <= 21; n++) {
        while (!pub.publish(`m${n}`)) await pub.ready()
      }
      await pub.ready()
      await pacer.close()
      await pub.close()
      // The publisher is gone from the topology, and its link closed: the queue is still there.
      await until(() => sub.publisherCount === 0, 'publisher count 0')
      const rest = await drainQueued(sub)
      expect(rest.map((message) => message.seq)).toEqual([18, 19, 20, 21])
      expect(rest.map((message) => message.lost)).toEqual([16, 0, 0, 0])
      for (const message of rest) message.release()
      await sub.close()
    }
  })

  it("'wait': publish() returns false when the window is full, ready() resolves once the consumer reads, nothing is lost", async () => {
    const topic = freshTopic('wait')
    const queueSize = 4
    const sub = subNode.subscribe(topic, { policy: 'wait', queueSize })
    const pub = pubNode.publisher(topic)
    await pub.waitForSubscribers()

    // The window is the queue size: that many go out, the next is refused (no seq spent).
    let accepted = 0
    while (pub.publish(`m${pub.seq + 1}`)) accepted++
    expect(accepted).toBe(queueSize)
    expect(pub.seq).toBe(queueSize)
    expect(pub.writable).toBe(false)
    let readyEvents = 0
    pub.on('ready', () => readyEvents++)
    const ready = pub.ready()

    const iterator = sub[Symbol.asyncIterator]()
    const received: Message[] = []
    for (let n = 0; n < queueSize; n++) received.push(await next(iterator))
    await ready
    expect(pub.writable).toBe(true)
    expect(readyEvents).toBe(1)

    const total = 40
    const reader = (async () => {
      while (received.length < total) {
        const message = await next(iterator)
        received.push(message)
      }
    })()
    let refused = 0
    while (pub.seq < total) {
      if (!pub.publish(`m${pub.seq + 1}`)) {
        refused++
        await pub.ready()
      }
    }
    await reader
    expect(received.map((message) => message.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    expect(received.every((message) => message.lost === 0 && message.text() === `m${message.seq}`)).toBe(true)
    // Sanity: the loop above really ran into back-pressure at least once more (window 4, 36 sends).
    expect(refused).toBeGreaterThan(0)
    for (const message of received) message.release()
    await sub.close()
    await pub.close()
  })

  it("'fail': the first missed message ends the subscription with ERR_PUBSUB_OVERFLOW", async () => {
    const topic = freshTopic('fail')
    const sub = subNode.subscribe(topic, { policy: 'fail', queueSize: 2 })
    const errors: Error[] = []
    sub.on('error', (error) => errors.push(error))
    let closedWith: Error | undefined | null = null
    void sub.closed.then((reason) => {
      closedWith = reason
    })
    const pub = pubNode.publisher(topic)
    await pub.waitForSubscribers()

    // Nobody reads: the queue (2) fills, the next arrival or a gap in seqs is an overflow.
    for (let n = 0; n < 1000 && closedWith === null; n++) {
      pub.publish(`m${n}`)
      await tick()
    }
    const reason = await sub.closed
    expect(PubSubError.isInstance(reason)).toBe(true)
    expect((reason as PubSubError).code).toBe('ERR_PUBSUB_OVERFLOW')
    expect(errors).toEqual([reason])
    // Queued messages went with it; the iterator throws the reason.
    expect(sub.queued).toBe(0)
    await expect(sub[Symbol.asyncIterator]().next()).rejects.toBe(reason)
    await until(() => pub.subscriberCount === 0, 'subscriberCount 0')
    await pub.close()
  })
})

describe('arguments and the closed state', () => {
  it('invalid arguments throw ERR_PUBSUB_INVALID_ARGUMENT before anything happens', async () => {
    const node = subNode
    // The topic grammar (src/topic.ts): the last four were accepted before issue 12.
    for (const topic of ['', 'x'.repeat(1025), 123, undefined, null, {}, 'a\0b', '   ', '\ud800', 'camera/*/frames']) {
      expectCode(() => node.publisher(topic as string), 'ERR_PUBSUB_INVALID_ARGUMENT')
      expectCode(() => node.subscribe(topic as string), 'ERR_PUBSUB_INVALID_ARGUMENT')
    }
    const topic = freshTopic('args')
    for (const options of [
      { policy: 'drop-newest' },
      { policy: '' },
      { policy: 1 },
      { queueSize: 0 },
      { queueSize: -1 },
      { queueSize: 1.5 },
      { queueSize: 65537 },
      { queueSize: '4' },
      { maxHeld: 0 },
      { signal: {} },
    ]) {
      expectCode(() => node.subscribe(topic, options as never), 'ERR_PUBSUB_INVALID_ARGUMENT')
    }
    expectCode(() => node.subscribe(topic, null as never), 'ERR_PUBSUB_INVALID_ARGUMENT')

    const pub = pubNode.publisher(topic)
    for (const data of [123, null, undefined, {}, [1, 2], new ArrayBuffer(4)]) {
      expectCode(() => pub.publish(data as never), 'ERR_PUBSUB_INVALID_ARGUMENT')
    }
    await expectRejectCode(pub.waitForSubscribers({ count: 0 }), 'ERR_PUBSUB_INVALID_ARGUMENT')
    await expectRejectCode(pub.ready({ signal: 'no' as never }), 'ERR_PUBSUB_INVALID_ARGUMENT')
    await expectRejectCode(connect({ domain, transport: 'carrier-pigeon' as never }), 'ERR_PUBSUB_INVALID_ARGUMENT')
    await expectRejectCode(connect(null as never), 'ERR_PUBSUB_INVALID_ARGUMENT')
    // Nothing was created by the refused calls: the topic has just this publisher.
    expect(pub.subscriberCount).toBe(0)
    await pub.close()
  })

  it('calls after close throw (or reject with) ERR_PUBSUB_CLOSED', async () => {
    const node = await connect({ domain, name: 'closing' })
    const topic = freshTopic('closed')
    const pub = node.publisher(topic)
    const sub = node.subscribe(topic)

    await pub.close()
    expectCode(() => pub.publish('late'), 'ERR_PUBSUB_CLOSED')
    await expectRejectCode(pub.ready(), 'ERR_PUBSUB_CLOSED')
    await expectRejectCode(pub.waitForSubscribers(), 'ERR_PUBSUB_CLOSED')
    expect(pub.subscriberCount).toBe(0)
    expect(pub.writable).toBe(false)

    await sub.close()
    await expectRejectCode(sub.waitForPublishers(), 'ERR_PUBSUB_CLOSED')
    expect(await sub[Symbol.asyncIterator]().next()).toEqual({ value: undefined, done: true })

    await node.close()
    expectCode(() => node.publisher(topic), 'ERR_PUBSUB_CLOSED')
    expectCode(() => node.subscribe(topic), 'ERR_PUBSUB_CLOSED')
  })

  it('closing the node closes its publishers and subscriptions; a waiting iterator ends', async () => {
    const node = await connect({ domain, name: 'closing-2' })
    const topic = freshTopic('node-close')
    const pub = node.publisher(topic)
    const sub = node.subscribe(topic)
    const pending = sub[Symbol.asyncIterator]().next()
    await node.close()
    expect(await pending).toEqual({ value: undefined, done: true })
    expect(await sub.closed).toBeUndefined()
    await pub.closed
    expectCode(() => pub.publish('late'), 'ERR_PUBSUB_CLOSED')
  })

  it("aborting a subscription's signal ends it with an AbortError, on `closed` and in a for await (issue 12, item 9)", async () => {
    const topic = freshTopic('abort')
    const pub = pubNode.publisher(topic)
    const controller = new AbortController()
    const sub = subNode.subscribe(topic, { signal: controller.signal })
    await pub.waitForSubscribers()
    pub.publish('before the abort')
    const seen: string[] = []
    const loop = (async () => {
      for await (const message of sub) {
        seen.push(message.text())
        message.release()
        controller.abort(new Error('enough'))
      }
    })()
    const thrown = await loop.then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(seen).toEqual(['before the abort'])
    expect(thrown).toMatchObject({ name: 'AbortError', code: 'ERR_PUBSUB_ABORTED' })
    expect(PubSubError.isInstance(thrown)).toBe(true)
    expect((thrown as Error).cause).toEqual(new Error('enough'))
    expect(await sub.closed).toBe(thrown)

    // Already aborted: ended at once, the same way; a normal close() settles with undefined.
    const early = subNode.subscribe(topic, { signal: AbortSignal.abort() })
    expect(await early.closed).toMatchObject({ name: 'AbortError', code: 'ERR_PUBSUB_ABORTED' })
    await expect(early[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'ERR_PUBSUB_ABORTED' })
    const normal = subNode.subscribe(topic, { signal: new AbortController().signal })
    await normal.close()
    expect(await normal.closed).toBeUndefined()
    await pub.close()
  })

  it('every error class a user can receive is exported from the package (issue 12, item 9)', async () => {
    const index = await import('./index.js')
    const fdpass = await import('@ipc-pubsub/fdpass')
    const shm = await import('@ipc-pubsub/shm')
    const topology = await import('@ipc-pubsub/topology')
    expect(index.FdpassError).toBe(fdpass.FdpassError)
    expect(index.ShmError).toBe(shm.ShmError)
    expect(index.TopologyError).toBe(topology.TopologyError)
    // connect() with a bad domain: the TopologyError users can match with the export.
    const error = await connect({ domain: 'bad domain!' }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(index.TopologyError.isInstance(error)).toBe(true)
  })

  it('close() and destroy() are idempotent, on nodes, publishers and subscriptions', async () => {
    const node = await connect({ domain, name: 'idempotent' })
    const topic = freshTopic('idempotent')
    const pub = node.publisher(topic)
    const sub = node.subscribe(topic)
    let closeEvents = 0
    node.on('close', () => closeEvents++)
    let subCloses = 0
    sub.on('close', () => subCloses++)
    let pubCloses = 0
    pub.on('close', () => pubCloses++)

    await Promise.all([pub.close(), pub.close()])
    await pub.close()
    await Promise.all([sub.close(), sub.destroy(new Error('ignored: already closing'))])
    await sub.close()
    expect(await sub.closed).toBeUndefined()

    await Promise.all([node.close(), node.close()])
    await node.close()
    // Once closed, destroy() changes nothing.
    await node.destroy(new Error('ignored: already closed'))
    expect(await node.closed).toBeUndefined()
    expect({ closeEvents, subCloses, pubCloses }).toEqual({ closeEvents: 1, subCloses: 1, pubCloses: 1 })

    // destroy() during a close() cuts it short (as an fdpass Channel does): its reason wins.
    const closing = await connect({ domain, name: 'idempotent-3' })
    const cut = new Error('cut short')
    await Promise.all([closing.close(), closing.destroy(cut), closing.close()])
    expect(await closing.closed).toBe(cut)

    // destroy() first, then close(): the first call's reason sticks.
    const other = await connect({ domain, name: 'idempotent-2' })
    const reason = new Error('gone')
    await Promise.all([other.destroy(reason), other.destroy(), other.close()])
    await other.close()
    expect(await other.closed).toBe(reason)
  })

  it('await using closes node, publisher and subscription at the end of the block', async () => {
    let node: PubSubNode | undefined
    let sub: Subscription | undefined
    {
      await using scoped = await connect({ domain, name: 'scoped' })
      node = scoped
      const topic = freshTopic('using')
      await using pub = scoped.publisher(topic)
      await using scopedSub = scoped.subscribe(topic)
      sub = scopedSub
      await pub.waitForSubscribers()
      pub.publish('in scope')
      using message = await next(scopedSub[Symbol.asyncIterator]())
      expect(message.text()).toBe('in scope')
    }
    expect(await node.closed).toBeUndefined()
    expect(await sub.closed).toBeUndefined()
    expect(sub.held).toBe(0)
    expectCode(() => node?.publisher('after'), 'ERR_PUBSUB_CLOSED')
  })
})
