// Issue 13, "Loans: a loan published, a loan dropped without publishing (no leak), a loan
// after close (coded error)". The publishing node runs in this process (so loans can be
// inspected and garbage-collected); the subscriber is a child process that checks every
// message (fixtures/pool-msg.ts) and counts those whose view lies in the publisher's pool:
// those arrived without a copy at either end.
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Loan, PubSubError, type PubSubNode, type Publisher } from '../src/index.ts'
import { uniqueDomain } from './helpers.ts'
import { PoolChild } from './fixtures/pool-driver.ts'
import { fillMessage } from './fixtures/pool-msg.ts'

// The smallest pool: four 16 KiB loans fill it, and anything beyond 32 KiB is a segment.
const POOL_SIZE = 64 * 1024
const BLOCK = 16 * 1024

let domain: string
let sub: PoolChild
let node: PubSubNode
let segmentNode: PubSubNode

beforeAll(async () => {
  domain = uniqueDomain('pool-loan')
  sub = await PoolChild.start('subscriber')
  await sub.connect(domain)
  node = await connect({ domain, name: 'loaner' })
  segmentNode = await connect({ domain, name: 'segment-loaner', transport: 'segment' })
})

afterAll(async () => {
  await node?.close()
  await segmentNode?.close()
  sub?.kill()
})

/** A publisher of `topic` on `on`, once the child subscribes to it ('wait', so nothing is lost). */
async function setup(topic: string, on = node, options: { queueSize?: number; stopAfter?: number } = {}): Promise<{ pub: Publisher; key: string }> {
  const key = await sub.subscribe(topic, { policy: 'wait', queueSize: options.queueSize ?? 64, poolSize: POOL_SIZE, ...options })
  const pub = on.publisher(topic, { poolSize: POOL_SIZE })
  await pub.waitForSubscribers({ signal: AbortSignal.timeout(15_000) })
  return { pub, key }
}

/** Fills `loan` with the message its publish will carry (the publisher's next seq). */
function fill(loan: Loan, pub: Publisher): void {
  fillMessage(loan.data, pub.seq + 1)
}

/** Loans of BLOCK bytes until the pool says no (at most `max`); returns them. */
function loanAll(pub: Publisher, max = 16): Loan[] {
  const loans: Loan[] = []
  for (let i = 0; i < max; i++) {
    const loan = pub.loan(BLOCK)
    if (loan === undefined) break
    loans.push(loan)
  }
  return loans
}

describe('pool transport: loans', () => {
  it('a loan filled in place and published arrives intact, in the pool at both ends (no copy)', async () => {
    const { pub, key } = await setup('loan-published')
    for (const size of [0, 1, 15, 16, 1000, BLOCK, 32 * 1024]) {
      const loan = pub.loan(size) as Loan
      expect(loan, `loan(${size})`).toBeDefined()
      expect(loan.data.byteLength).toBe(size)
      // The view is a block of the publisher's pool itself (a 0-byte loan needs none).
      if (size > 0) expect(loan.data.buffer.byteLength).toBe(POOL_SIZE)
      fill(loan, pub)
      expect(loan.publish()).toBe(true)
      expect(loan.done).toBe(true)
    }
    const stats = await sub.statsUntil(key, (s) => s.received === 7, 'the 7 loans')
    expect(stats).toMatchObject({ received: 7, bad: 0, badDetail: [], outOfOrder: 0, lost: 0, firstSeq: 1, lastSeq: 7 })
    // Read in place at the subscriber too: the views lie in its mapping of the same pool.
    expect(stats.poolMessages).toBeGreaterThanOrEqual(6)
    await pub.close()
  })

  it('loans cancelled (or disposed) give their block back: 2000 of them never exhaust a 64 KiB pool', async () => {
    const { pub, key } = await setup('loan-cancelled')
    // What exhaustion looks like: four loans hold the whole pool, a fifth is refused.
    const held = loanAll(pub)
    expect(held.length).toBe(POOL_SIZE / BLOCK)
    for (const loan of held) loan.cancel()
    for (let i = 0; i < 2000; i++) {
      const loan = pub.loan(BLOCK)
      expect(loan, `loan ${i}`).toBeDefined()
      loan?.data.fill(i & 0xff)
      if (i % 2 === 0) loan?.cancel()
      else loan?.[Symbol.dispose]()
      expect(loan?.done).toBe(true)
    }
    // Cancelling twice is harmless (idempotent), and a cancelled loan cannot be published.
    const loan = pub.loan(BLOCK) as Loan
    loan.cancel()
    loan.cancel()
    expect(() => loan.publish()).toThrow(expect.objectContaining({ code: 'ERR_PUBSUB_CLOSED' }))
    // The whole pool is there, and the next loan published still arrives intact.
    const again = loanAll(pub)
    expect(again.length).toBe(POOL_SIZE / BLOCK)
    for (const extra of again.slice(1)) extra.cancel()
    fill(again[0] as Loan, pub)
    expect(again[0]?.publish()).toBe(true)
    const stats = await sub.statsUntil(key, (s) => s.received === 1, 'the published loan')
    expect(stats).toMatchObject({ received: 1, bad: 0, poolMessages: 1 })
    await pub.close()
  })

  it('loans dropped without publish or cancel are reclaimed by GC', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const { pub } = await setup('loan-dropped')
    // Four loans fill the pool; then they are dropped (no reference is kept).
    expect(loanAll(pub).length).toBe(POOL_SIZE / BLOCK)
    expect(pub.loan(BLOCK)).toBeUndefined()
    let back: Loan[] = []
    for (let i = 0; i < 50 && back.length < POOL_SIZE / BLOCK; i++) {
      gc()
      // Finalizers run in a later task.
      await sleep(10)
      for (const loan of back) loan.cancel()
      back = loanAll(pub)
    }
    expect(back.length).toBe(POOL_SIZE / BLOCK)
    for (const loan of back) loan.cancel()
    await pub.close()
  })

  it('loan() is undefined while nobody subscribes, and while a lossless subscriber has no room (as publish() is false)', async () => {
    const lonely = node.publisher('loan-nobody', { poolSize: POOL_SIZE })
    expect(lonely.loan(BLOCK)).toBeUndefined()
    expect(lonely.loan(0)).toBeUndefined()
    expect(lonely.publish('x')).toBe(false)
    await lonely.close()

    // A lossless subscriber that reads 2 messages, then nothing: a window of 4 after that.
    const { pub, key } = await setup('loan-full', node, { queueSize: 4, stopAfter: 2 })
    const loanAndPublish = async (): Promise<number> => {
      for (let n = 0; n < 100; n++) {
        const loan = pub.loan(1024)
        if (loan === undefined) return n
        fill(loan, pub)
        expect(loan.publish()).toBe(true)
        await new Promise((resolve) => setImmediate(resolve))
      }
      return 100
    }
    let published = await loanAndPublish()
    // It hands out 2, which gives 2 credits back (half its window), then reads no more.
    await sub.statsUntil(key, (s) => s.received === 2, 'the 2 messages it reads')
    published += await loanAndPublish()
    // Its window of 4, plus the 2 it read: then no room, for loans as for publish().
    expect(published).toBe(6)
    expect(pub.loan(1024)).toBeUndefined()
    expect(pub.publish(new Uint8Array(16))).toBe(false)
    expect(pub.writable).toBe(false)
    expect(await sub.stats(key)).toMatchObject({ bad: 0, received: 2 })
    await pub.close()
  })

  it('loan() and loan.publish() after the publisher closed throw ERR_PUBSUB_CLOSED; a published loan cannot be published again', async () => {
    const { pub, key } = await setup('loan-closed')
    const loan = pub.loan(BLOCK) as Loan
    fill(loan, pub)
    expect(loan.publish()).toBe(true)
    // Twice: a coded error, and nothing more is sent.
    expect(() => loan.publish()).toThrow(expect.objectContaining({ code: 'ERR_PUBSUB_CLOSED' }))
    expect(PubSubError.isInstance((() => {
      try {
        loan.publish()
      } catch (error) {
        return error
      }
    })())).toBe(true)
    const open = pub.loan(BLOCK) as Loan
    await pub.close()
    expect(() => pub.loan(BLOCK)).toThrow(expect.objectContaining({ code: 'ERR_PUBSUB_CLOSED' }))
    // A loan still out when its publisher closed: publishing it is refused, touching it is safe.
    expect(() => open.publish()).toThrow(expect.objectContaining({ code: 'ERR_PUBSUB_CLOSED' }))
    open.data.fill(1)
    open.cancel()
    await sleep(100)
    const stats = await sub.stats(key)
    expect(stats).toMatchObject({ received: 1, bad: 0 })
  })

  it('invalid sizes are coded errors', async () => {
    const { pub } = await setup('loan-invalid')
    for (const size of [-1, 1.5, Number.NaN, 2 ** 60]) {
      expect(() => pub.loan(size), String(size)).toThrow(expect.objectContaining({ code: expect.stringMatching(/^ERR_PUBSUB_(INVALID_ARGUMENT|TOO_LARGE)$/) }))
    }
    await pub.close()
  })

  it('a loan larger than half the pool is a segment of its own, and arrives intact', async () => {
    const { pub, key } = await setup('loan-large')
    const size = 48 * 1024
    const loan = pub.loan(size) as Loan
    expect(loan).toBeDefined()
    // Its own memory, not a block of the pool: the pool keeps all its room.
    expect(loan.data.buffer.byteLength).not.toBe(POOL_SIZE)
    const room = loanAll(pub)
    expect(room.length).toBe(POOL_SIZE / BLOCK)
    for (const other of room) other.cancel()
    fill(loan, pub)
    expect(loan.publish()).toBe(true)
    const stats = await sub.statsUntil(key, (s) => s.received === 1, 'the large loan')
    expect(stats).toMatchObject({ received: 1, bad: 0, badDetail: [], poolMessages: 0, bytes: size })
    await pub.close()
  })

  it("loans on a 'segment' publisher work the same way", async () => {
    const { pub, key } = await setup('loan-segment', segmentNode)
    expect(pub.transport).toBe('segment')
    for (const size of [0, 100, BLOCK, 48 * 1024]) {
      const loan = pub.loan(size) as Loan
      expect(loan, `loan(${size})`).toBeDefined()
      fill(loan, pub)
      expect(loan.publish()).toBe(true)
    }
    // Cancelled ones cost nothing.
    for (let i = 0; i < 100; i++) pub.loan(BLOCK)?.cancel()
    const stats = await sub.statsUntil(key, (s) => s.received === 4, 'the 4 loans')
    expect(stats).toMatchObject({ received: 4, bad: 0, badDetail: [], outOfOrder: 0, poolMessages: 0, firstSeq: 1, lastSeq: 4 })
    await pub.close()
  })
})
