// A hostile peer connects straight to a node's data address and breaks the data-path
// protocol. This test process is the victim: it holds the subscribing node (and a real
// publishing node), so leaks show in its own /proc/self. For every bad frame the victim must
// cut that one link, say why on 'error', keep delivering from real publishers, and close
// every descriptor and mapping the attack brought in.
import { closeSync, openSync } from 'node:fs'
import { type Channel, connect as fdConnect } from '@ipc-pubsub/fdpass'
import { Segment } from '@ipc-pubsub/shm'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { encodeCredit, encodeHello, encodeMessage, type MessageHeader } from '../src/frames.ts'
import { connect, PubSubError, type PubSubErrorCode, type PubSubNode, type Publisher, type Subscription } from '../src/index.ts'
import { killAll, Peer, uniqueDomain } from './helpers.ts'
import { type Counts as ProcCounts, counts as procCounts } from './proc.ts'

type Counts = Omit<ProcCounts, 'devShm'>

function counts(): Counts {
  const { devShm: _, ...rest } = procCounts()
  return rest
}

const sameCounts = (a: Counts, b: Counts) => a.fds === b.fds && a.memfdFds === b.memfdFds && a.memfdMaps === b.memfdMaps

/**
 * Waits until `predicate` holds, checking every few ms; false if it still does not after a
 * while. The deadline only turns a hang into a readable failure.
 */
async function settle(predicate: () => boolean): Promise<boolean> {
  const deadline = Date.now() + 5000
  while (!predicate()) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return true
}

async function until(predicate: () => boolean, what: string): Promise<void> {
  if (!(await settle(predicate))) throw new Error(`timed out waiting for ${what}`)
}

const TOPIC = 'hostile'
let victim: PubSubNode
let publisherNode: PubSubNode
let realPublisher: Publisher
let subscription: Subscription
let subscriptionClosed = false
/** What the victim's subscription received (each message is released at once). */
const received: { publisher: string; seq: number; text: string }[] = []
/** What the victim emitted on 'error'. */
const errors: Error[] = []
const onError = (error: Error) => errors.push(error)

let domain: string
beforeAll(async () => {
  domain = uniqueDomain('hostile')
  victim = await connect({ domain, name: 'victim' })
  publisherNode = await connect({ domain, name: 'real-publisher' })
  victim.on('error', onError)
  subscription = victim.subscribe(TOPIC)
  subscription.on('message', (message) => {
    received.push({ publisher: message.publisher, seq: message.seq, text: message.text() })
    message.release()
  })
  void subscription.closed.then(() => {
    subscriptionClosed = true
  })
  realPublisher = publisherNode.publisher(TOPIC)
  await realPublisher.waitForSubscribers()
  // One delivery first: whatever the data path allocates once is in place before any count.
  await realDelivery()
})

afterAll(async () => {
  await publisherNode?.close()
  await victim?.close()
})

beforeEach(() => {
  errors.length = 0
})

let realCount = 0
/** The real publisher still reaches the victim's subscription. */
async function realDelivery(): Promise<void> {
  const text = `real ${++realCount}`
  expect(realPublisher.publish(text)).toBe(true)
  await until(() => received.some((message) => message.text === text), `delivery of "${text}"`)
}

/** A memfd sealed as the segment transport requires, `size` bytes. */
function sealedMemfd(size: number): Segment {
  const segment = Segment.create(size, { name: 'hostile' })
  segment.bytes.fill(0x5a)
  segment.seal('shrink', 'grow', 'future-write', 'seal')
  return segment
}

/** Sends one frame with the descriptors of `segments` (or raw fds), then drops our copies. */
function send(channel: Channel, frame: Uint8Array, attach: (Segment | number)[] = []): void {
  channel.send(
    frame,
    attach.map((item) => (typeof item === 'number' ? item : item.fd)),
  )
  for (const item of attach) {
    if (typeof item === 'number') closeSync(item)
    else item.close()
  }
}

/** A well-formed message frame for the victim's subscription, from node 'evil'. */
function message(fields: Partial<MessageHeader> = {}): Uint8Array {
  return encodeMessage({
    transport: 1,
    fdCount: 1,
    length: 64,
    seq: 1,
    timestamp: process.hrtime.bigint(),
    publisher: 'evil/1',
    target: subscription.id,
    ...fields,
  })
}

const hello = (node = 'evil', protocol?: number) => encodeHello(node, protocol)

interface Attack {
  name: string
  code: PubSubErrorCode
  attack(channel: Channel): void
}

const attacks: Attack[] = [
  {
    name: 'garbage bytes (with an fd attached)',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => send(channel, Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]), [sealedMemfd(64)]),
  },
  {
    name: 'a truncated hello',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => send(channel, hello().subarray(0, 3)),
  },
  {
    name: 'a message before the hello',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => send(channel, message(), [sealedMemfd(64)]),
  },
  {
    name: 'a hello with protocol 99',
    code: 'ERR_PUBSUB_VERSION',
    attack: (channel) => send(channel, hello('evil', 99)),
  },
  {
    name: 'a hello carrying an fd',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => send(channel, hello(), [sealedMemfd(64)]),
  },
  {
    name: "a message claiming another node's publisher id",
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, message({ publisher: realPublisher.id }), [sealedMemfd(64)])
    },
  },
  {
    name: 'fd count mismatch: the header says 1, 2 came',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, message({ fdCount: 1 }), [sealedMemfd(64), sealedMemfd(64)])
    },
  },
  {
    name: 'fd count mismatch: the header says 2, 1 came',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, message({ fdCount: 2 }), [sealedMemfd(64)])
    },
  },
  {
    name: 'a non-empty payload without its fd',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, message({ fdCount: 0 }))
    },
  },
  {
    name: 'an unknown transport id',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, message({ transport: 7 }), [sealedMemfd(64)])
    },
  },
  {
    name: 'an UNSEALED memfd (the sender could shrink it under our mapping: SIGBUS)',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, message({ length: 64 }), [Segment.create(64, { name: 'hostile' })])
    },
  },
  {
    name: 'a memfd sealed against shrinking but still writable',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      const segment = Segment.create(64, { name: 'hostile' })
      segment.seal('shrink', 'grow')
      send(channel, hello())
      send(channel, message({ length: 64 }), [segment])
    },
  },
  {
    name: "a sealed memfd whose size differs from the frame's length",
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, message({ length: 16 }), [sealedMemfd(64)])
    },
  },
  {
    name: 'an fd that is not a memfd (/dev/null)',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, message({ length: 64 }), [openSync('/dev/null', 'r')])
    },
  },
  {
    name: 'a credit frame (subscribers send those, publishers do not)',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello())
      send(channel, encodeCredit(subscription.id, 1))
    },
  },
  {
    name: 'a seq that goes backwards for the same publisher and subscription',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello('evil-seq'))
      send(channel, message({ publisher: 'evil-seq/1', seq: 5 }), [sealedMemfd(64)])
      send(channel, message({ publisher: 'evil-seq/1', seq: 3 }), [sealedMemfd(64)])
    },
  },
  {
    name: 'a repeated seq for the same publisher and subscription',
    code: 'ERR_PUBSUB_PROTOCOL',
    attack: (channel) => {
      send(channel, hello('evil-dup'))
      send(channel, message({ publisher: 'evil-dup/1', seq: 9 }), [sealedMemfd(64)])
      send(channel, message({ publisher: 'evil-dup/1', seq: 9 }), [sealedMemfd(64)])
    },
  },
]

describe('a hostile peer on the data address', () => {
  it.each(attacks)('$name: link destroyed, $code emitted, node keeps working, nothing leaks', async ({ attack, code }) => {
    const before = counts()
    const channel = await fdConnect(victim.address)
    attack(channel)

    // The victim hangs up on us.
    const reason = await channel.closed
    expect(reason, 'the victim closed the link').toBeInstanceOf(Error)
    expect(channel.state).toBe('closed')

    // It said why, once, with a coded PubSubError. (Soft: the checks below still run.)
    expect.soft(errors.length, `errors: ${errors.map(String).join('; ')}`).toBe(1)
    const [error] = errors
    expect.soft(PubSubError.isInstance(error)).toBe(true)
    expect.soft((error as PubSubError | undefined)?.code).toBe(code)

    // The subscription and the real publisher's link are untouched.
    await realDelivery()
    expect(subscriptionClosed).toBe(false)

    // Every fd and mapping the attack brought in (ours and the victim's copies) is gone.
    await settle(() => sameCounts(counts(), before))
    expect(counts()).toEqual(before)
  })

  it('without an error listener the link is still destroyed, and nothing is thrown', async () => {
    const before = counts()
    victim.off('error', onError)
    try {
      const channel = await fdConnect(victim.address)
      send(channel, Uint8Array.from([0xff, 0xff]), [sealedMemfd(64)])
      await channel.closed
      expect(channel.state).toBe('closed')
    } finally {
      victim.on('error', onError)
    }
    await realDelivery()
    expect(errors).toEqual([])
    await settle(() => sameCounts(counts(), before))
    expect(counts()).toEqual(before)
  })

  it('a message for an unknown subscription is dropped quietly (fd closed); the link stays open', async () => {
    const before = counts()
    const channel = await fdConnect(victim.address)
    send(channel, hello('stranger'))
    send(channel, message({ publisher: 'stranger/1', seq: 1, target: `${victim.id}/999999` }), [sealedMemfd(64)])
    send(channel, message({ publisher: 'stranger/1', seq: 2, target: 'no-such-node/1' }), [sealedMemfd(64)])
    // Then a good message on the same link: frames are handled in order, so once it arrives the
    // two before it have been dealt with.
    send(channel, message({ publisher: 'stranger/1', seq: 3 }), [sealedMemfd(64)])
    await until(() => received.some((m) => m.publisher === 'stranger/1'), "the stranger's good message")
    expect(received.filter((m) => m.publisher === 'stranger/1')).toEqual([{ publisher: 'stranger/1', seq: 3, text: 'Z'.repeat(64) }])
    expect(channel.state).toBe('open')
    expect(errors).toEqual([])
    // The dropped messages' fds were closed, while the link is still up.
    await settle(() => counts().memfdFds === before.memfdFds && counts().memfdMaps === before.memfdMaps)
    const during = counts()
    expect({ memfdFds: during.memfdFds, memfdMaps: during.memfdMaps }).toEqual({ memfdFds: before.memfdFds, memfdMaps: before.memfdMaps })

    await channel.close()
    await realDelivery()
    await settle(() => sameCounts(counts(), before))
    expect(counts()).toEqual(before)
  })

  it("a hello with another process's node id is refused (the pid does not match)", async () => {
    // A real node in a child process: the victim knows its pid from the topology.
    const other = await Peer.start('impersonated')
    try {
      const { id } = await other.connect(domain)
      await until(() => victim.topology.snapshot().nodes.some((state) => state.node.id === id), 'the victim knows the other node')
      const before = counts()
      const channel = await fdConnect(victim.address)
      send(channel, hello(id))
      send(channel, message({ publisher: `${id}/1`, seq: 1000 }), [sealedMemfd(64)])
      expect(await channel.closed).toBeInstanceOf(Error)
      expect(errors.map((error) => (error as PubSubError).code)).toEqual(['ERR_PUBSUB_PROTOCOL'])
      expect(received.some((m) => m.publisher === `${id}/1`)).toBe(false)
      await realDelivery()
      await settle(() => sameCounts(counts(), before))
      expect(counts()).toEqual(before)
    } finally {
      await killAll()
    }
  })
})
