// The pool link's rings, both ends over one ArrayBuffer in this process: a model-based property
// over any interleaving of the two sides' calls (indices started near 2^32 so they wrap), the
// sleep/wake handshake call by call, and a hostile peer that writes its index words at will.
// The two-process version (memory ordering, doorbells, no lost wake-up) is test/ring-hammer.test.ts.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PubSubError } from './errors.js'
import {
  COMPLETION_BYTES,
  RING_HEADER_BYTES,
  RING_MAGIC,
  RingPublisherEnd,
  RingSubscriberEnd,
  ringBytes,
  SUBMISSION_BYTES,
  type Submission,
} from './ring.js'

// Int32 indices of the header words (the layout in ring.ts's header comment).
const SUB_CAPACITY = 1
const COMP_CAPACITY = 2
const SUB_TAIL = 64 / 4
const SUB_HEAD = 128 / 4
const SUB_SLEEPING = 192 / 4
const COMP_TAIL = 256 / 4
const COMP_HEAD = 320 / 4
const PUB_SLEEPING = 384 / 4

const TWO_32 = 2 ** 32
const U32_MAX = TWO_32 - 1

function makeRing(submissions = 16, completions = 16, start = 0) {
  const buffer = new ArrayBuffer(ringBytes(submissions, completions))
  const pub = RingPublisherEnd.format(buffer, 0, submissions, completions, start)
  const sub = RingSubscriberEnd.open(buffer)
  return { buffer, words: new Int32Array(buffer), pub, sub }
}

function blank(): Submission {
  return { pool: 0, offset: 0, length: 0, target: 0, seq: 0, timestamp: 0n }
}

function writeEntry(pub: RingPublisherEnd, e: Submission): void {
  pub.write(e.pool, e.offset, e.length, e.target, e.seq, e.timestamp)
}

function entryOf(i: number): Submission {
  return { pool: i, offset: i * 2, length: i * 3, target: i * 4, seq: i, timestamp: BigInt(i) }
}

function protocolError(fn: () => unknown): PubSubError {
  try {
    fn()
  } catch (error) {
    expect(PubSubError.isInstance(error)).toBe(true)
    expect((error as PubSubError).code).toBe('ERR_PUBSUB_PROTOCOL')
    return error as PubSubError
  }
  throw new Error('expected ERR_PUBSUB_PROTOCOL, nothing was thrown')
}

describe('ring layout', () => {
  it('sizes and places what the header comment says', () => {
    expect(RING_HEADER_BYTES).toBe(512)
    expect(SUBMISSION_BYTES).toBe(32)
    expect(COMPLETION_BYTES).toBe(8)
    expect(ringBytes(16, 32)).toBe(512 + 16 * 32 + 32 * 8)
    const { buffer, words, pub, sub } = makeRing(16, 32)
    expect(words[0]).toBe(RING_MAGIC)
    expect(new TextDecoder().decode(new Uint8Array(buffer, 0, 4))).toBe('IPR1')
    expect([words[SUB_CAPACITY], words[COMP_CAPACITY]]).toEqual([16, 32])
    // Entry 0 at byte 512, its fields in order; the timestamp is the i64 at byte 24.
    pub.write(-2, 0xfffffffe, 7, 9, 2 ** 32 + 5, -3n)
    pub.publish()
    expect(Array.from(words.subarray(128, 134))).toEqual([-2, -2, 7, 9, 5, 1])
    expect(new BigInt64Array(buffer, 512 + 24, 1)[0]).toBe(-3n)
    expect(words[SUB_TAIL]).toBe(1)
    // Completion 0 right after the 16 submission entries.
    sub.writeCompletion(-7, 0xffffffff)
    sub.publishCompletions()
    expect(Array.from(words.subarray((512 + 16 * 32) / 4, (512 + 16 * 32) / 4 + 2))).toEqual([-7, -1])
    expect(words[COMP_TAIL]).toBe(1)
  })

  it('format() writes every index and flag, whatever the memory held', () => {
    const buffer = new ArrayBuffer(ringBytes(16, 16))
    new Int32Array(buffer).fill(0x55555555)
    const pub = RingPublisherEnd.format(buffer, 0, 16, 16, U32_MAX)
    const words = new Int32Array(buffer)
    for (const index of [SUB_TAIL, SUB_HEAD, COMP_TAIL, COMP_HEAD]) expect(words[index]).toBe(-1)
    expect([words[SUB_SLEEPING], words[PUB_SLEEPING]]).toEqual([0, 0])
    const sub = RingSubscriberEnd.open(buffer)
    expect(sub.available()).toBe(0)
    expect(pub.room()).toBe(16)
    expect(sub.completionRoom()).toBe(16)
    expect(pub.drainCompletions(() => {})).toBe(0)
  })

  it('format() refuses capacities and start indices out of range', () => {
    const buffer = new ArrayBuffer(ringBytes(65536, 65536))
    for (const [s, c] of [
      [8, 16],
      [16, 8],
      [24, 16],
      [16, 48],
      [131072, 16],
      [0, 16],
      [-16, 16],
      [16.5, 16],
    ] as const) {
      expect(() => RingPublisherEnd.format(buffer, 0, s, c)).toThrow(RangeError)
    }
    for (const start of [-1, TWO_32, 1.5, Number.NaN]) expect(() => RingPublisherEnd.format(buffer, 0, 16, 16, start)).toThrow(RangeError)
    expect(RingPublisherEnd.format(buffer, 0, 65536, 65536).room()).toBe(65536)
  })
})

// One step of either side. The model says what each call must return.
type Op =
  | { op: 'write'; entry: Submission; release: [number, number] }
  | { op: 'publish' }
  | { op: 'take'; max: number }
  | { op: 'commit' }
  | { op: 'complete'; max: number }
  | { op: 'publishCompletions' }
  | { op: 'drainCompletions' }
  | { op: 'subSleep' }
  | { op: 'pubSleep' }
  | { op: 'subWake' }
  | { op: 'pubWake' }

const i32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })
const u32 = fc.integer({ min: 0, max: U32_MAX })
const entryArb: fc.Arbitrary<Submission> = fc.record({
  pool: i32,
  offset: u32,
  length: u32,
  target: u32,
  seq: fc.maxSafeNat(),
  timestamp: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
})
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant('write' as const), entry: entryArb, release: fc.tuple(i32, u32) }) },
  { weight: 3, arbitrary: fc.constant({ op: 'publish' as const }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('take' as const), max: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 3, arbitrary: fc.constant({ op: 'commit' as const }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('complete' as const), max: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 3, arbitrary: fc.constant({ op: 'publishCompletions' as const }) },
  { weight: 3, arbitrary: fc.constant({ op: 'drainCompletions' as const }) },
  { weight: 2, arbitrary: fc.constant({ op: 'subSleep' as const }) },
  { weight: 2, arbitrary: fc.constant({ op: 'pubSleep' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'subWake' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'pubWake' as const }) },
)
// Half the runs start every index a little below 2^32, so they wrap within the run.
const startArb = fc.oneof(fc.constant(0), fc.integer({ min: TWO_32 - 100, max: U32_MAX }), u32)

interface Sent {
  entry: Submission
  release: [number, number]
}

/** Runs `ops` against both ends and a model of what each call must see. */
function runModel(submissions: number, completions: number, start: number, ops: readonly Op[]): void {
  const { words, pub, sub } = makeRing(submissions, completions, start)
  // The publisher's side.
  let unpublished: Sent[] = [] // written, not yet published
  let written = 0 // entries written in all
  let headSeen = 0 // the subscriber's head (a count) as the publisher last took it
  let received: [number, number][] = [] // completions drained, in order
  // In the ring.
  const inRing: Sent[] = [] // published, not yet taken
  let committed = 0 // entries the subscriber committed
  let compInRing: [number, number][] = [] // completions published, not yet drained
  let drained = 0 // completions drained in all
  // The subscriber's side.
  let taken = 0
  const toRelease: Sent[] = [] // taken, completion not yet written
  let compUnpublished: [number, number][] = []
  let compWritten = 0
  let compHeadSeen = 0 // the publisher's compHead (a count) as the subscriber last took it
  // Flags.
  let subAsleep = false
  let pubAsleep = false
  // Exactly once, in order.
  const allSent: Sent[] = []
  const allTaken: Submission[] = []
  const into = blank()

  const step = (op: Op) => {
    switch (op.op) {
      case 'write': {
        const room = pub.room()
        headSeen = committed
        expect(room).toBe(submissions - (written - committed))
        if (room > 0) {
          writeEntry(pub, op.entry)
          const sent = { entry: op.entry, release: op.release }
          unpublished.push(sent)
          allSent.push(sent)
          written++
        }
        break
      }
      case 'publish':
        expect(pub.publish()).toBe(subAsleep)
        subAsleep = false
        inRing.push(...unpublished)
        unpublished = []
        break
      case 'take': {
        const available = sub.available()
        expect(available).toBe(inRing.length)
        for (let i = 0; i < Math.min(op.max, available); i++) {
          const sent = inRing.shift() as Sent
          expect(sub.peek(into)).toEqual(sent.entry)
          allTaken.push({ ...into })
          sub.advance()
          taken++
          toRelease.push(sent)
        }
        break
      }
      case 'commit':
        sub.commit()
        committed = taken
        break
      case 'complete': {
        const room = sub.completionRoom()
        compHeadSeen = drained
        expect(room).toBe(completions - (compWritten - drained))
        for (let i = 0; i < Math.min(op.max, room) && toRelease.length > 0; i++) {
          const { release } = toRelease.shift() as Sent
          sub.writeCompletion(release[0], release[1])
          compUnpublished.push(release)
          compWritten++
        }
        break
      }
      case 'publishCompletions':
        expect(sub.publishCompletions()).toBe(pubAsleep)
        pubAsleep = false
        compInRing.push(...compUnpublished)
        compUnpublished = []
        break
      case 'drainCompletions': {
        const got: [number, number][] = []
        expect(pub.drainCompletions((a, b) => got.push([a, b]))).toBe(compInRing.length)
        expect(got).toEqual(compInRing)
        received = received.concat(got)
        drained += got.length
        compInRing = []
        break
      }
      case 'subSleep': {
        // Idle only if nothing was published past what it took and the publisher freed no
        // completion slot since the subscriber last looked.
        const idle = inRing.length === 0 && drained === compHeadSeen
        expect(sub.sleep()).toBe(idle)
        compHeadSeen = drained
        subAsleep = idle
        break
      }
      case 'pubSleep': {
        const idle = compInRing.length === 0 && committed === headSeen
        expect(pub.sleep()).toBe(idle)
        headSeen = committed
        pubAsleep = idle
        break
      }
      case 'subWake':
        sub.wake()
        subAsleep = false
        break
      case 'pubWake':
        pub.wake()
        pubAsleep = false
        break
    }
    // Never more in flight than the capacities, whatever the interleaving.
    expect(written - committed).toBeLessThanOrEqual(submissions)
    expect(compWritten - drained).toBeLessThanOrEqual(completions)
    expect(pub.pending).toBe(written - headSeen)
    expect([words[SUB_SLEEPING], words[PUB_SLEEPING]]).toEqual([Number(subAsleep), Number(pubAsleep)])
  }

  for (const op of ops) step(op)
  // Then both sides finish: everything written arrives once, in order, and every completion
  // comes back once, in order.
  for (let guard = 0; allTaken.length < allSent.length || received.length < allSent.length; guard++) {
    expect(guard).toBeLessThan(10_000)
    step({ op: 'publish' })
    step({ op: 'take', max: submissions })
    step({ op: 'commit' })
    step({ op: 'complete', max: completions })
    step({ op: 'publishCompletions' })
    step({ op: 'drainCompletions' })
  }
  expect(allTaken).toEqual(allSent.map((sent) => sent.entry))
  expect(received).toEqual(allSent.map((sent) => sent.release))
  expect(sub.available()).toBe(0)
  expect(pub.room()).toBe(submissions)
  expect(sub.completionRoom()).toBe(completions)
  // The indices moved by exactly what went through, mod 2^32.
  expect(words[SUB_TAIL]! >>> 0).toBe((start + written) % TWO_32)
  expect(words[SUB_HEAD]! >>> 0).toBe((start + written) % TWO_32)
  expect(words[COMP_TAIL]! >>> 0).toBe((start + written) % TWO_32)
  expect(words[COMP_HEAD]! >>> 0).toBe((start + written) % TWO_32)
}

describe('ring property', () => {
  it('any interleaving delivers every entry and every completion exactly once, in order, intact', () => {
    fc.assert(
      fc.property(fc.constantFrom(16, 32), fc.constantFrom(16, 32), startArb, fc.array(opArb, { maxLength: 400 }), (s, c, start, ops) =>
        runModel(s, c, start, ops),
      ),
      { numRuns: 300 },
    )
  })

  it('wraps the u32 indices past 2^32 in the middle of a batch', () => {
    const start = U32_MAX - 6
    const { words, pub, sub } = makeRing(16, 16, start)
    const into = blank()
    let next = 0
    let took = 0
    for (let round = 0; round < 5; round++) {
      expect(pub.room()).toBe(16)
      for (let i = 0; i < 11; i++) writeEntry(pub, entryOf(next++))
      pub.publish()
      expect(sub.available()).toBe(11)
      for (let i = 0; i < 11; i++) {
        expect(sub.peek(into)).toEqual(entryOf(took))
        sub.writeCompletion(took, took)
        took++
        sub.advance()
      }
      sub.commit()
      sub.publishCompletions()
      const got: number[] = []
      expect(pub.drainCompletions((a, b) => got.push(a, b))).toBe(11)
      expect(got).toEqual(Array.from({ length: 11 }, (_, i) => [took - 11 + i, took - 11 + i]).flat())
    }
    expect(words[SUB_TAIL]).toBe(55 - 7)
    expect(words[COMP_HEAD]).toBe(55 - 7)
  })
})

describe('ring sleep/wake', () => {
  it('the subscriber sleeps only with nothing pending; publish() rings exactly once per sleep', () => {
    const { pub, sub } = makeRing()
    expect(pub.publish()).toBe(false) // nobody asleep
    expect(sub.sleep()).toBe(true)
    expect(sub.sleep()).toBe(true) // still nothing: it may re-declare
    writeEntry(pub, entryOf(1))
    expect(pub.publish()).toBe(true) // took the flag: ring
    expect(pub.publish()).toBe(false) // already taken
    // Something pending: no sleep, and the flag is left clear.
    expect(sub.sleep()).toBe(false)
    writeEntry(pub, entryOf(2))
    expect(pub.publish()).toBe(false)
    sub.advance()
    sub.advance()
    sub.commit()
    expect(sub.available()).toBe(0)
    expect(sub.sleep()).toBe(true)
    sub.wake()
    writeEntry(pub, entryOf(3))
    expect(pub.publish()).toBe(false) // woke by itself: no ring needed
  })

  it('published but unread entries keep the subscriber awake even after commit()', () => {
    const { pub, sub } = makeRing()
    writeEntry(pub, entryOf(1))
    pub.publish()
    sub.commit() // commits nothing: the entry is still there
    expect(sub.sleep()).toBe(false)
    // Written but not yet published: invisible, so the subscriber may sleep, and the publish rings.
    const into = blank()
    sub.peek(into)
    sub.advance()
    writeEntry(pub, entryOf(2))
    expect(sub.sleep()).toBe(true)
    expect(pub.publish()).toBe(true)
  })

  it('the publisher sleeps only with no completion pending; publishCompletions() rings exactly once', () => {
    const { pub, sub } = makeRing()
    expect(sub.publishCompletions()).toBe(false)
    expect(pub.sleep()).toBe(true)
    sub.writeCompletion(0, 64)
    expect(sub.publishCompletions()).toBe(true)
    expect(sub.publishCompletions()).toBe(false)
    expect(pub.sleep()).toBe(false) // one is pending
    sub.writeCompletion(0, 128)
    expect(sub.publishCompletions()).toBe(false)
    expect(pub.drainCompletions(() => {})).toBe(2)
    expect(pub.sleep()).toBe(true)
    pub.wake()
    sub.writeCompletion(-1, 3)
    expect(sub.publishCompletions()).toBe(false)
  })

  // Regression: sleep() used to reload only the other side's tail, so a publisher that found
  // the submission ring full, and a subscriber that found the completion ring full, slept
  // through the other side freeing slots in between (a lost wake-up: nothing rang them).
  it('a publisher waiting for submission room does not sleep through a commit', () => {
    const { pub, sub } = makeRing()
    for (let i = 0; i < 16; i++) writeEntry(pub, entryOf(i))
    pub.publish()
    expect(pub.room()).toBe(0)
    // The subscriber takes everything and commits, before the publisher announces its sleep.
    while (sub.available() > 0) sub.advance()
    sub.commit()
    expect(sub.publishCompletions()).toBe(false) // the flag is not set yet: no ring
    expect(pub.sleep()).toBe(false) // so it must not sleep
    expect(pub.room()).toBe(16)
    expect(pub.sleep()).toBe(true) // the head was taken: no spurious second false
    // And once asleep, the subscriber's commit is announced by publishCompletions().
    for (let i = 0; i < 16; i++) writeEntry(pub, entryOf(i))
    pub.wake()
    pub.publish()
    expect(pub.room()).toBe(0)
    expect(pub.sleep()).toBe(true)
    while (sub.available() > 0) sub.advance()
    sub.commit()
    expect(sub.publishCompletions()).toBe(true)
  })

  it('a subscriber waiting for completion room does not sleep through a drain', () => {
    const { pub, sub } = makeRing()
    for (let i = 0; i < 16; i++) sub.writeCompletion(0, i * 64)
    sub.publishCompletions()
    expect(sub.completionRoom()).toBe(0)
    // The publisher drains before the subscriber announces its sleep; its publish() (nothing
    // written) finds no flag and does not ring.
    expect(pub.drainCompletions(() => {})).toBe(16)
    expect(pub.publish()).toBe(false)
    expect(sub.sleep()).toBe(false)
    expect(sub.completionRoom()).toBe(16)
    expect(sub.sleep()).toBe(true)
    // Once asleep, the drain is announced by the publisher's next publish().
    sub.wake()
    for (let i = 0; i < 16; i++) sub.writeCompletion(0, i * 64)
    sub.publishCompletions()
    expect(sub.sleep()).toBe(true)
    pub.drainCompletions(() => {})
    expect(pub.publish()).toBe(true)
  })
})

describe('ring hostile peer', () => {
  // A ring with 5 entries in flight of which the subscriber committed 3 (the publisher saw that).
  function midway(start: number) {
    const ring = makeRing(16, 16, start)
    for (let i = 0; i < 5; i++) writeEntry(ring.pub, entryOf(i))
    ring.pub.publish()
    for (let i = 0; i < 3; i++) ring.sub.advance()
    ring.sub.commit()
    expect(ring.pub.room()).toBe(14)
    return ring
  }

  it('subHead written backwards or past the tail: the publisher throws, at any index', () => {
    for (const start of [0, U32_MAX - 2, U32_MAX]) {
      for (const head of [start + 2, start + 6, start + 3 + 2 ** 31, start - 1, start + 100]) {
        const { words, pub } = midway(start)
        words[SUB_HEAD] = head | 0
        // sleep() does not take it (a corrupt head frees nothing, so it sleeps) nor throw:
        // it is called where a throw would escape the link; room() reports it.
        expect(pub.sleep()).toBe(true)
        protocolError(() => pub.room())
        protocolError(() => pub.room())
      }
    }
  })

  it('any subHead: room() is exact for a head between what it saw and the tail, and throws for the rest', () => {
    fc.assert(
      fc.property(startArb, u32, (start, head) => {
        const { words, pub } = midway(start)
        words[SUB_HEAD] = head | 0
        const ahead = (head - ((start + 3) % TWO_32) + TWO_32) % TWO_32
        if (ahead <= 2) expect(pub.room()).toBe(16 - (5 - 3 - ahead))
        else protocolError(() => pub.room())
      }),
      { numRuns: 2000 },
    )
  })

  it('compTail more than C ahead (or behind): drainCompletions throws before reading an entry', () => {
    fc.assert(
      fc.property(startArb, u32, (start, tail) => {
        const { words, pub } = makeRing(16, 16, start)
        words[COMP_TAIL] = tail | 0
        const count = (tail - start + TWO_32) % TWO_32
        let calls = 0
        if (count <= 16) {
          expect(pub.drainCompletions(() => calls++)).toBe(count)
          expect(calls).toBe(count)
        } else {
          protocolError(() => pub.drainCompletions(() => calls++))
          expect(calls).toBe(0)
        }
      }),
      { numRuns: 2000 },
    )
    for (const start of [0, U32_MAX]) {
      const { words, pub } = makeRing(16, 16, start)
      words[COMP_TAIL] = (start + 17) | 0
      protocolError(() => pub.drainCompletions(() => {}))
      words[COMP_TAIL] = (start - 1) | 0
      protocolError(() => pub.drainCompletions(() => {}))
    }
  })

  it('subTail more than S ahead (or behind): available() throws', () => {
    fc.assert(
      fc.property(startArb, u32, (start, tail) => {
        const { words, sub } = makeRing(16, 16, start)
        words[SUB_TAIL] = tail | 0
        const count = (tail - start + TWO_32) % TWO_32
        if (count <= 16) expect(sub.available()).toBe(count)
        else protocolError(() => sub.available())
      }),
      { numRuns: 2000 },
    )
    const { words, pub, sub } = makeRing(16, 16, U32_MAX)
    writeEntry(pub, entryOf(1))
    pub.publish()
    sub.advance()
    words[SUB_TAIL] = (U32_MAX - 1) | 0 // behind what the subscriber took
    protocolError(() => sub.available())
  })

  it('compHead written backwards or past the tail: completionRoom() throws, sleep() does not take it', () => {
    for (const start of [0, U32_MAX]) {
      for (const head of [start - 1, start + 3, start + 2 ** 31]) {
        const { words, sub } = makeRing(16, 16, start)
        sub.writeCompletion(0, 0)
        sub.writeCompletion(0, 64)
        sub.publishCompletions()
        words[COMP_HEAD] = head | 0
        expect(sub.sleep()).toBe(true)
        protocolError(() => sub.completionRoom())
        protocolError(() => sub.completionRoom())
      }
    }
  })

  it('open() refuses bad magic, bad capacities and a size that does not match', () => {
    const good = new ArrayBuffer(ringBytes(16, 32))
    RingPublisherEnd.format(good, 0, 16, 32)
    expect(RingSubscriberEnd.open(good).submissions).toBe(16)

    const withHeader = (edit: (words: Int32Array) => void, bytes = ringBytes(16, 32)) => {
      const buffer = new ArrayBuffer(bytes)
      new Uint8Array(buffer).set(new Uint8Array(good, 0, Math.min(bytes, good.byteLength)))
      edit(new Int32Array(buffer, 0, 4))
      return buffer
    }
    protocolError(() => RingSubscriberEnd.open(withHeader((w) => (w[0] = 0))))
    protocolError(() => RingSubscriberEnd.open(withHeader((w) => (w[0] = RING_MAGIC + 1))))
    for (const [s, c] of [
      [24, 32],
      [16, 33],
      [8, 32],
      [16, 0],
      [-16, 32],
      [131072, 32],
      [16, 2 ** 30],
    ]) {
      protocolError(() =>
        RingSubscriberEnd.open(
          withHeader((w) => {
            w[SUB_CAPACITY] = s as number
            w[COMP_CAPACITY] = c as number
          }),
        ),
      )
    }
    // Capacities that are valid but do not match the mapping's size.
    protocolError(() => RingSubscriberEnd.open(withHeader((w) => (w[COMP_CAPACITY] = 16))))
    protocolError(() => RingSubscriberEnd.open(withHeader((w) => (w[SUB_CAPACITY] = 65536))))
    protocolError(() => RingSubscriberEnd.open(withHeader(() => {}, ringBytes(16, 32) + 8)))
    protocolError(() => RingSubscriberEnd.open(withHeader(() => {}, ringBytes(16, 32) - 8)))
    protocolError(() => RingSubscriberEnd.open(withHeader(() => {}, ringBytes(16, 32) + 4096)))
    protocolError(() => RingSubscriberEnd.open(new ArrayBuffer(511)))
    protocolError(() => RingSubscriberEnd.open(new ArrayBuffer(0)))
  })
})
