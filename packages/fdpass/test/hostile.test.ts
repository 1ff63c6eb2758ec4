import { once } from 'node:events'
import { closeSync, readSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Segment } from '@ipc-pubsub/shm'
import { parseAddress } from '../src/address.ts'
import { type Channel, connect, type FdpassError, listen, type Message, type Server } from '../src/index.ts'
import * as native from '../src/native.ts'
import { fdCount, settleFdCount, uniqueAddress } from './helpers.ts'

// The server under attack enforces small limits so that hostile frames are cheap to make.
const MAX_FRAME = 1024
const MAX_FDS = 4
// The receive control buffer holds MAX_FDS + 1 fds rounded up to 8 bytes (6 here): 5 or 6
// fds arrive whole (ERR_FDPASS_TOO_MANY_FDS), 7 or more are cut by the kernel (MSG_CTRUNC:
// ERR_FDPASS_TRUNCATED).
const FD_CAPACITY = native.fdCapacity(MAX_FDS + 1)

/** A peer that speaks raw SOCK_SEQPACKET through the native module: no limits, no manners. */
class RawPeer {
  readonly fd: number
  constructor(address: string) {
    this.fd = native.socketSeqpacket()
    native.connectFd(this.fd, parseAddress(address).sockaddr)
  }
  async send(data: Uint8Array, fds: number[] = []): Promise<void> {
    for (;;) {
      const n = native.sendFrame(this.fd, data, fds)
      if (n >= 0) return
      if (-n !== native.EAGAIN) throw new Error(`raw send failed: errno ${-n}`)
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  close(): void {
    native.closeFd(this.fd)
  }
}

/** mulberry32: a small seeded PRNG, so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Accepted {
  channel: Channel
  messages: Message[]
  /** Checked copies of the bytes behind each received fd (the fds themselves are closed). */
  fdTags: number[]
}

describe('hostile input from a raw socket peer', () => {
  let server: Server
  let address: string
  let good: Channel
  let pool: Segment[]
  const accepted: Accepted[] = []
  const waiting: ((a: Accepted) => void)[] = []
  let baseline: number

  // A well-behaved client that must keep working whatever the others send.
  async function goodRoundTrip(tag: number): Promise<void> {
    const segment = pool[tag % pool.length]!
    good.send(Buffer.from(`ping ${tag}`), [segment.fd])
    const [message] = (await once(good, 'message')) as [Message]
    expect(Buffer.from(message.data).toString()).toBe(`ping ${tag}`)
    expect(message.fds).toHaveLength(1)
    const tagBuf = Buffer.alloc(4)
    readSync(message.fds[0]!, tagBuf, 0, 4, 0)
    expect(tagBuf.readUInt32LE(0)).toBe(tag % pool.length)
    for (const fd of message.fds) closeSync(fd)
  }

  function nextAccepted(): Promise<Accepted> {
    const ready = accepted.shift()
    if (ready !== undefined) return Promise.resolve(ready)
    return new Promise((resolve) => waiting.push(resolve))
  }

  beforeAll(async () => {
    baseline = fdCount()
    pool = Array.from({ length: 4 }, (_, i) => {
      const segment = Segment.create(4096)
      new DataView(segment.buffer).setUint32(0, i, true)
      return segment
    })
    address = uniqueAddress('hostile')
    server = listen(address, { maxFrameSize: MAX_FRAME, maxFdsPerFrame: MAX_FDS })
    server.on('connection', (channel: Channel) => {
      const entry: Accepted = { channel, messages: [], fdTags: [] }
      channel.on('message', (message: Message) => {
        entry.messages.push(message)
        for (const fd of message.fds) {
          const buf = Buffer.alloc(4)
          readSync(fd, buf, 0, 4, 0)
          entry.fdTags.push(buf.readUInt32LE(0))
          closeSync(fd)
        }
        message.fds = []
        if (entry === first) channel.send(message.data, [pool[entry.fdTags.at(-1)!]!.fd])
      })
      const waiter = waiting.shift()
      if (waiter !== undefined) waiter(entry)
      else accepted.push(entry)
    })
    const firstAccepted = nextAccepted()
    good = await connect(address, { maxFrameSize: MAX_FRAME, maxFdsPerFrame: MAX_FDS })
    const first = await firstAccepted
  })

  afterAll(async () => {
    await good.close()
    await server.destroy()
    for (const segment of pool) segment.close()
    expect(await settleFdCount(baseline)).toBe(baseline)
  })

  // Opens a raw connection, lets `send` misbehave on it, closes it, and returns how the
  // server's side of it ended.
  async function attack(
    send: (peer: RawPeer, entry: Accepted) => Promise<void>,
  ): Promise<{ reason: unknown; entry: Accepted }> {
    const next = nextAccepted()
    const peer = new RawPeer(address)
    const entry = await next
    try {
      await send(peer, entry)
    } finally {
      peer.close()
    }
    return { reason: await entry.channel.closed, entry }
  }

  it('takes random bytes as frames, intact', async () => {
    const random = prng(1)
    const frames = Array.from({ length: 100 }, () =>
      Uint8Array.from({ length: 1 + Math.floor(random() * MAX_FRAME) }, () => Math.floor(random() * 256)),
    )
    const { reason, entry } = await attack(async (peer, entry) => {
      for (const frame of frames) await peer.send(frame)
      while (entry.messages.length < frames.length) await new Promise((resolve) => setTimeout(resolve, 5))
      expect(entry.channel.state).toBe('open')
    })
    expect(reason).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
    expect(entry.messages.map((m) => Buffer.from(m.data))).toEqual(frames.map((f) => Buffer.from(f)))
    await goodRoundTrip(1)
  })

  it('closes the channel on an oversize frame with ERR_FDPASS_FRAME_TOO_LARGE', async () => {
    for (const size of [MAX_FRAME + 1, 4 * MAX_FRAME, 100_000]) {
      const { reason } = await attack((peer) => peer.send(new Uint8Array(size), [pool[0]!.fd]))
      expect(reason).toMatchObject({ code: 'ERR_FDPASS_FRAME_TOO_LARGE' })
    }
    await goodRoundTrip(2)
  })

  it('closes the channel on more fds than allowed with ERR_FDPASS_TOO_MANY_FDS, closing those that came', async () => {
    expect(FD_CAPACITY).toBe(MAX_FDS + 2)
    for (let count = MAX_FDS + 1; count <= FD_CAPACITY; count++) {
      const fds = Array.from({ length: count }, (_, i) => pool[i % pool.length]!.fd)
      const { reason, entry } = await attack((peer) => peer.send(new Uint8Array([1]), fds))
      expect(reason).toMatchObject({ code: 'ERR_FDPASS_TOO_MANY_FDS' })
      expect(entry.messages).toHaveLength(0)
    }
    await goodRoundTrip(3)
  })

  it('closes the channel on truncated control data (MSG_CTRUNC) with ERR_FDPASS_TRUNCATED', async () => {
    for (const count of [FD_CAPACITY + 1, 64, native.SCM_MAX_FD]) {
      const fds = Array.from({ length: count }, (_, i) => pool[i % pool.length]!.fd)
      const { reason } = await attack((peer) => peer.send(new Uint8Array([1]), fds))
      expect(reason).toMatchObject({ code: 'ERR_FDPASS_TRUNCATED' })
    }
    await goodRoundTrip(4)
  })

  it('closes the channel on an empty frame with ERR_FDPASS_PROTOCOL', async () => {
    // Only while the peer stays connected: an empty frame followed at once by the peer's
    // close reads exactly like end-of-stream (see README: empty frames).
    const { reason } = await attack(async (peer, entry) => {
      await peer.send(new Uint8Array(0))
      await entry.channel.closed
    })
    expect(reason).toMatchObject({ code: 'ERR_FDPASS_PROTOCOL' })
    await goodRoundTrip(5)
  })

  it('survives 10,000+ randomized frames over many connections: right codes, good client served, no fd leaked', async () => {
    const random = prng(0x5eed)
    const pick = (n: number) => Math.floor(random() * n)
    type Ending = 'close' | 'oversize' | 'too-many' | 'truncated' | 'empty'
    const endings: Ending[] = ['close', 'oversize', 'too-many', 'truncated', 'empty']
    const expectedCode: Record<Ending, FdpassError['code']> = {
      close: 'ERR_FDPASS_PEER_CLOSED',
      oversize: 'ERR_FDPASS_FRAME_TOO_LARGE',
      'too-many': 'ERR_FDPASS_TOO_MANY_FDS',
      truncated: 'ERR_FDPASS_TRUNCATED',
      empty: 'ERR_FDPASS_PROTOCOL',
    }
    let frames = 0
    let connections = 0
    const fdsOf = (count: number) => Array.from({ length: count }, () => pool[pick(pool.length)]!.fd)
    while (frames < 10_000) {
      const valid = 1 + pick(80)
      const ending = endings[pick(endings.length)]!
      const sent: { data: Buffer; tags: number[] }[] = []
      const { reason, entry } = await attack(async (peer, entry) => {
        for (let i = 0; i < valid; i++) {
          const data = Buffer.alloc(1 + pick(MAX_FRAME))
          for (let j = 0; j < data.length; j += 97) data[j] = pick(256)
          const fds = fdsOf(pick(MAX_FDS + 1))
          sent.push({ data, tags: fds.map((fd) => pool.findIndex((s) => s.fd === fd)) })
          await peer.send(data, fds)
        }
        switch (ending) {
          case 'oversize':
            await peer.send(new Uint8Array(MAX_FRAME + 1 + pick(10 * MAX_FRAME)), fdsOf(pick(MAX_FDS + 1)))
            break
          case 'too-many':
            await peer.send(new Uint8Array(1 + pick(MAX_FRAME)), fdsOf(MAX_FDS + 1 + pick(FD_CAPACITY - MAX_FDS)))
            break
          case 'truncated':
            await peer.send(new Uint8Array(pick(MAX_FRAME)), fdsOf(FD_CAPACITY + 1 + pick(native.SCM_MAX_FD - FD_CAPACITY)))
            break
          case 'empty':
            await peer.send(new Uint8Array(0))
            await entry.channel.closed // see the empty-frame test
            break
          case 'close':
            break
        }
      })
      frames += valid + (ending === 'close' ? 0 : 1)
      connections++
      expect(reason, `connection ${connections} (${ending})`).toMatchObject({ code: expectedCode[ending] })
      // Every frame before the bad one arrived whole and in order, fds included.
      expect(entry.messages.length).toBe(valid)
      entry.messages.forEach((m, i) => {
        expect(Buffer.from(m.data).equals(sent[i]!.data)).toBe(true)
      })
      expect(entry.fdTags).toEqual(sent.flatMap((s) => s.tags))
      if (connections % 10 === 0) await goodRoundTrip(connections)
    }
    expect(frames).toBeGreaterThanOrEqual(10_000)
    expect(connections).toBeGreaterThan(100)
    expect(good.state).toBe('open')
    expect(server.listening).toBe(true)
    // Only the pool's memfds, both ends of the good channel and the listening socket remain:
    // every fd that came in a bad frame was closed.
    const expected = baseline + pool.length + 3
    expect(await settleFdCount(expected)).toBe(expected)
  })
})
