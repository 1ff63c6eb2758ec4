// A hostile peer connects straight to a node's data address and breaks the data-path
// protocol. This test process is the victim: it holds the subscribing node (and a real
// publishing node), so leaks show in its own /proc/self. For every bad frame the victim must
// cut that one link, say why on 'error', keep delivering from real publishers, and close
// every descriptor and mapping the attack brought in.
//
// For every transport of the real publisher (its link to the victim carries pools or segments,
// and must be untouched either way), and on two kinds of hostile link: a plain one, and a pool
// link (the attacker attached a ring first, as a pool publisher does). On a pool link a
// segment frame waits for its ring marker before it is opened, so the same bad frames then take
// the fallback path of the pool transport; the ring and doorbells the attacker passed must be
// closed with the link too. (Attacks on the ring itself, by a hostile publisher or
// subscriber, are pool-*.test.ts's.)
import { closeSync, openSync } from 'node:fs'
import { type Channel, connect as fdConnect } from '@ipc-pubsub/fdpass'
import { Segment } from '@ipc-pubsub/shm'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { encodeAttachRing, encodeBindLane, encodeCredit, encodeHello, encodeMessage, type MessageHeader } from '../src/frames.ts'
import {
  connect,
  PubSubError,
  type PubSubErrorCode,
  type PubSubNode,
  type Publisher,
  type Subscription,
  TRANSPORTS,
} from '../src/index.ts'
import { POOL_TRANSPORT_ID, PoolSender } from '../src/pool.ts'
import { hubThreadsUp, killAll, Peer, uniqueDomain } from './helpers.ts'
import { type Counts as ProcCounts, counts as procCounts } from './proc.ts'

type Counts = Omit<ProcCounts, 'devShm'>

function counts(): Counts {
  const { devShm: _, ...rest } = procCounts()
  return rest
}

const sameCounts = (a: Counts, b: Counts) =>
  a.fds === b.fds && a.memfdFds === b.memfdFds && a.memfdMaps === b.memfdMaps && a.eventFds === b.eventFds

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

type LinkKind = 'plain link' | 'pool link'

/**
 * The attacker's end of a link to the victim. On a 'pool link', a good hello is followed by an
 * attach-ring (a real ring and doorbells, as a pool publisher makes them), and each message
 * frame by what a pool publisher sends with a segment frame: its lane's binding (once) and a
 * ring marker that says where the frame goes.
 */
class Hostile {
  readonly channel: Channel
  readonly #kind: LinkKind
  #sender: PoolSender | undefined
  readonly #lanes = new Map<string, number>()

  constructor(channel: Channel, kind: LinkKind) {
    this.channel = channel
    this.#kind = kind
  }

  static async open(kind: LinkKind): Promise<Hostile> {
    return new Hostile(await fdConnect(victim.address), kind)
  }

  /** Sends one raw frame with the descriptors of `attach` (segments or fds), then drops our copies. */
  send(frame: Uint8Array, attach: (Segment | number)[] = []): void {
    this.channel.send(
      frame,
      attach.map((item) => (typeof item === 'number' ? item : item.fd)),
    )
    for (const item of attach) {
      if (typeof item === 'number') closeSync(item)
      else item.close()
    }
  }

  /** A good hello as `node`; on a pool link, then the ring. */
  hello(node = 'evil'): void {
    this.send(hello(node))
    if (this.#kind === 'pool link') {
      this.#sender = new PoolSender({ credit() {}, woke() {} })
      this.channel.send(encodeAttachRing(POOL_TRANSPORT_ID), this.#sender.attachFds)
    }
  }

  /** A message frame (see `message()`), with its lane binding and ring marker on a pool link. */
  message(fields: Partial<MessageHeader>, attach: (Segment | number)[]): void {
    const frame = message(fields)
    const sender = this.#sender
    if (sender === undefined) {
      this.send(frame, attach)
      return
    }
    const target = fields.target ?? subscription.id
    let lane = this.#lanes.get(target)
    if (lane === undefined) {
      lane = this.#lanes.size
      this.#lanes.set(target, lane)
      this.send(encodeBindLane(lane, target))
    }
    this.send(frame, attach)
    // As OutboundLink.sendMessage writes it: the frame comes first, then its marker.
    sender.marker(0, lane, 0, 0n)
    sender.flush()
  }

  /** Drops the attacker's ring and doorbells (its copies). */
  close(): void {
    this.#sender?.close()
  }
}

interface Attack {
  name: string
  code: PubSubErrorCode
  /** It gets past a good hello, so it runs on a pool link too (a ring needs a hello first). */
  afterHello: boolean
  attack(link: Hostile): void
}

const attacks: Attack[] = [
  {
    name: 'garbage bytes (with an fd attached)',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: false,
    attack: (link) => link.send(Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]), [sealedMemfd(64)]),
  },
  {
    name: 'a truncated hello',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: false,
    attack: (link) => link.send(hello().subarray(0, 3)),
  },
  {
    name: 'a message before the hello',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: false,
    attack: (link) => link.send(message(), [sealedMemfd(64)]),
  },
  {
    name: 'a hello with protocol 99',
    code: 'ERR_PUBSUB_VERSION',
    afterHello: false,
    attack: (link) => link.send(hello('evil', 99)),
  },
  {
    name: 'a hello carrying an fd',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: false,
    attack: (link) => link.send(hello(), [sealedMemfd(64)]),
  },
  {
    name: "a message claiming another node's publisher id",
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ publisher: realPublisher.id }, [sealedMemfd(64)])
    },
  },
  {
    name: 'fd count mismatch: the header says 1, 2 came',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ fdCount: 1 }, [sealedMemfd(64), sealedMemfd(64)])
    },
  },
  {
    name: 'fd count mismatch: the header says 2, 1 came',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ fdCount: 2 }, [sealedMemfd(64)])
    },
  },
  {
    name: 'a non-empty payload without its fd',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ fdCount: 0 }, [])
    },
  },
  {
    name: 'an unknown transport id',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ transport: 7 }, [sealedMemfd(64)])
    },
  },
  {
    name: 'a message frame claiming the pool transport (pool payloads travel in the ring)',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ transport: POOL_TRANSPORT_ID }, [sealedMemfd(64)])
    },
  },
  {
    name: 'an UNSEALED memfd (the sender could shrink it under our mapping: SIGBUS)',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ length: 64 }, [Segment.create(64, { name: 'hostile' })])
    },
  },
  {
    name: 'a memfd sealed against shrinking but still writable',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      const segment = Segment.create(64, { name: 'hostile' })
      segment.seal('shrink', 'grow')
      link.hello()
      link.message({ length: 64 }, [segment])
    },
  },
  {
    name: "a sealed memfd whose size differs from the frame's length",
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ length: 16 }, [sealedMemfd(64)])
    },
  },
  {
    name: 'an fd that is not a memfd (/dev/null)',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.message({ length: 64 }, [openSync('/dev/null', 'r')])
    },
  },
  {
    name: 'a credit frame (subscribers send those, publishers do not)',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello()
      link.send(encodeCredit(subscription.id, 1))
    },
  },
  {
    name: 'a seq that goes backwards for the same publisher and subscription',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello('evil-seq')
      link.message({ publisher: 'evil-seq/1', seq: 5 }, [sealedMemfd(64)])
      link.message({ publisher: 'evil-seq/1', seq: 3 }, [sealedMemfd(64)])
    },
  },
  {
    name: 'a repeated seq for the same publisher and subscription',
    code: 'ERR_PUBSUB_PROTOCOL',
    afterHello: true,
    attack: (link) => {
      link.hello('evil-dup')
      link.message({ publisher: 'evil-dup/1', seq: 9 }, [sealedMemfd(64)])
      link.message({ publisher: 'evil-dup/1', seq: 9 }, [sealedMemfd(64)])
    },
  },
]

describe.each(TRANSPORTS)('a hostile peer on the data address (the real publisher sends with %s)', (transport) => {
  beforeAll(async () => {
    domain = uniqueDomain(`hostile-${transport}`)
    received.length = 0
    subscriptionClosed = false
    victim = await connect({ domain, name: 'victim', transport })
    publisherNode = await connect({ domain, name: 'real-publisher', transport })
    // The topology's hub thread (here too) is up before any count.
    await hubThreadsUp([process.pid])
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
    expect(realPublisher.transport).toBe(transport)
    await realPublisher.waitForSubscribers()
    // One delivery first: whatever the data path allocates once (with 'pool': the publisher's
    // pool, the link's ring and doorbells, at both ends) is in place before any count.
    await realDelivery()
  })

  afterAll(async () => {
    await publisherNode?.close()
    await victim?.close()
  })

  beforeEach(() => {
    errors.length = 0
  })

  // The plain link last: its final test spawns (and kills) a peer process.
  describe.each(['pool link', 'plain link'] as const)('on a %s', (kind) => {
    const cases = kind === 'plain link' ? attacks : attacks.filter((attack) => attack.afterHello)

    it.each(cases)('$name: link destroyed, $code emitted, node keeps working, nothing leaks', async ({ attack, code }) => {
      const before = counts()
      const link = await Hostile.open(kind)
      try {
        attack(link)

        // The victim hangs up on us.
        const reason = await link.channel.closed
        expect(reason, 'the victim closed the link').toBeInstanceOf(Error)
        expect(link.channel.state).toBe('closed')
      } finally {
        link.close()
      }

      // It said why, once, with a coded PubSubError. (Soft: the checks below still run.)
      expect.soft(errors.length, `errors: ${errors.map(String).join('; ')}`).toBe(1)
      const [error] = errors
      expect.soft(PubSubError.isInstance(error)).toBe(true)
      expect.soft((error as PubSubError | undefined)?.code).toBe(code)

      // The subscription and the real publisher's link are untouched.
      await realDelivery()
      expect(subscriptionClosed).toBe(false)

      // Every fd and mapping the attack brought in (ours and the victim's copies: payloads,
      // and on a pool link the ring and doorbells) is gone.
      await settle(() => sameCounts(counts(), before))
      expect(counts()).toEqual(before)
    })

    it('a message for an unknown subscription is dropped quietly (fd closed); the link stays open', async () => {
      // A node name of its own per link kind: `received` is shared by both.
      const stranger = kind === 'plain link' ? 'stranger' : 'pool-stranger'
      const before = counts()
      const link = await Hostile.open(kind)
      try {
        link.hello(stranger)
        link.message({ publisher: `${stranger}/1`, seq: 1, target: `${victim.id}/999999` }, [sealedMemfd(64)])
        link.message({ publisher: `${stranger}/1`, seq: 2, target: 'no-such-node/1' }, [sealedMemfd(64)])
        // Then a good message on the same link: frames are handled in order, so once it arrives
        // the two before it have been dealt with.
        link.message({ publisher: `${stranger}/1`, seq: 3 }, [sealedMemfd(64)])
        await until(() => received.some((m) => m.publisher === `${stranger}/1`), "the stranger's good message")
        expect(received.filter((m) => m.publisher === `${stranger}/1`)).toEqual([{ publisher: `${stranger}/1`, seq: 3, text: 'Z'.repeat(64) }])
        expect(link.channel.state).toBe('open')
        expect(errors).toEqual([])
        // The dropped messages' fds were closed, while the link is still up (which on a pool
        // link holds a ring at each end).
        const payloads = (c: Counts) => ({ memfdFds: c.memfdFds - c.ringFds, memfdMaps: c.memfdMaps - c.ringMaps })
        await settle(() => JSON.stringify(payloads(counts())) === JSON.stringify(payloads(before)))
        expect(payloads(counts())).toEqual(payloads(before))
        expect(counts().ringMaps - before.ringMaps).toBe(kind === 'pool link' ? 2 : 0)

        await link.channel.close()
      } finally {
        link.close()
      }
      await realDelivery()
      await settle(() => sameCounts(counts(), before))
      expect(counts()).toEqual(before)
    })

    if (kind === 'pool link') return

    it('without an error listener the link is still destroyed, and nothing is thrown', async () => {
      const before = counts()
      victim.off('error', onError)
      try {
        const link = await Hostile.open(kind)
        link.send(Uint8Array.from([0xff, 0xff]), [sealedMemfd(64)])
        await link.channel.closed
        expect(link.channel.state).toBe('closed')
      } finally {
        victim.on('error', onError)
      }
      await realDelivery()
      expect(errors).toEqual([])
      await settle(() => sameCounts(counts(), before))
      expect(counts()).toEqual(before)
    })

    it("a hello with another process's node id is refused (the pid does not match)", async () => {
      // A real node in a child process: the victim knows its pid from the topology.
      const other = await Peer.start('impersonated')
      let id: string | undefined
      try {
        id = (await other.connect(domain)).id
        await until(() => victim.topology.snapshot().nodes.some((state) => state.node.id === id), 'the victim knows the other node')
        const before = counts()
        const link = await Hostile.open(kind)
        link.send(hello(id))
        link.send(message({ publisher: `${id}/1`, seq: 1000 }), [sealedMemfd(64)])
        expect(await link.channel.closed).toBeInstanceOf(Error)
        expect(errors.map((error) => (error as PubSubError).code)).toEqual(['ERR_PUBSUB_PROTOCOL'])
        expect(received.some((m) => m.publisher === `${id}/1`)).toBe(false)
        await realDelivery()
        await settle(() => sameCounts(counts(), before))
        expect(counts()).toEqual(before)
      } finally {
        await killAll()
        // Its topology connection (to the victim, which runs the hub) closes with it: gone
        // before the next test counts fds.
        await until(() => !victim.topology.snapshot().nodes.some((state) => state.node.id === id), 'the other node gone')
      }
    })
  })
})
