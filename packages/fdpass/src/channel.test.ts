import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Segment } from '@ipc-pubsub/shm'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { parseAddress } from './address.js'
import {
  type Channel,
  connect,
  FdpassError,
  listen,
  MAX_FDS_PER_FRAME,
  MAX_FRAME_SIZE,
  type Message,
  type Server,
} from './index.js'
import * as native from './native.js'
import { fdCount, readFdU32 } from '../test/helpers.ts'

let n = 0
const address = () => `@ipc-pubsub-fdpass-unit-${process.pid}-${++n}`
const O_CLOEXEC = 0o2000000

function isCloexec(fd: number): boolean {
  const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!
  return (Number.parseInt(flags, 8) & O_CLOEXEC) !== 0
}

function memfd(tag: number): Segment {
  const segment = Segment.create(4096)
  new DataView(segment.buffer).setUint32(0, tag, true)
  return segment
}

const open: { servers: Server[]; channels: Channel[] } = { servers: [], channels: [] }

/** A server and a connected pair of channels in this process. */
async function pair(
  serverOptions: Parameters<typeof listen>[1] = {},
  clientOptions: Parameters<typeof connect>[1] = {},
): Promise<{ server: Server; client: Channel; accepted: Channel; address: string }> {
  const addr = address()
  const server = listen(addr, serverOptions)
  const acceptedP = once(server, 'connection') as Promise<[Channel]>
  const client = await connect(addr, clientOptions)
  const [accepted] = await acceptedP
  open.servers.push(server)
  open.channels.push(client, accepted)
  return { server, client, accepted, address: addr }
}

afterEach(async () => {
  await Promise.all(open.channels.splice(0).map((c) => c.destroy()))
  await Promise.all(open.servers.splice(0).map((s) => s.destroy()))
})

describe('Channel', () => {
  it('carries frames with fds, boundaries kept, in order; received fds are new, close-on-exec and ours', async () => {
    const { client, accepted } = await pair()
    const segment = memfd(1234)
    const sizes = [1, 7, 4096, 65536]
    for (const size of sizes) client.send(new Uint8Array(size).fill(size & 0xff), [segment.fd])
    segment.close() // ours to close at once: the kernel gave the peer its own references
    const got: Message[] = []
    for await (const message of accepted) {
      got.push(message)
      if (got.length === sizes.length) break
    }
    expect(got.map((m) => m.data.length)).toEqual(sizes)
    for (const [i, m] of got.entries()) {
      expect(m.data.every((b) => b === (sizes[i]! & 0xff))).toBe(true)
      expect(m.fds).toHaveLength(1)
      expect(isCloexec(m.fds[0]!)).toBe(true)
      expect(readFdU32(m.fds[0]!)).toBe(1234)
      closeSync(m.fds[0]!)
    }
  })

  it('knows the peer credentials at both ends', async () => {
    const { client, accepted } = await pair()
    const me = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() }
    expect(client.peer).toEqual(me)
    expect(accepted.peer).toEqual(me)
  })

  it('sends an fd with no bytes, but refuses a frame with neither', async () => {
    const { client, accepted } = await pair()
    const segment = memfd(9)
    client.send(new Uint8Array(0), [segment.fd])
    const [message] = (await once(accepted, 'message')) as [Message]
    expect(message.data.length).toBe(0)
    expect(readFdU32(message.fds[0]!)).toBe(9)
    closeSync(message.fds[0]!)
    segment.close()
    expect(() => client.send(new Uint8Array(0))).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_ARGUMENT' }))
  })

  it('checks send arguments before any syscall and stays open', async () => {
    const { client } = await pair({}, { maxFrameSize: 100, maxFdsPerFrame: 2 })
    const code = (fn: () => unknown) => {
      try {
        fn()
      } catch (error) {
        return FdpassError.isInstance(error) ? error.code : String(error)
      }
      return 'no error'
    }
    expect(code(() => client.send('x' as never))).toBe('ERR_FDPASS_INVALID_ARGUMENT')
    expect(code(() => client.send(new Uint8Array(1), [-1]))).toBe('ERR_FDPASS_INVALID_ARGUMENT')
    expect(code(() => client.send(new Uint8Array(1), 3 as never))).toBe('ERR_FDPASS_INVALID_ARGUMENT')
    expect(code(() => client.send(new Uint8Array(101)))).toBe('ERR_FDPASS_FRAME_TOO_LARGE')
    expect(code(() => client.send(new Uint8Array(1), [0, 1, 2]))).toBe('ERR_FDPASS_TOO_MANY_FDS')
    // Not an open fd: the kernel says EBADF; only that frame fails.
    expect(code(() => client.send(new Uint8Array(1), [999_999]))).toBe('ERR_FDPASS_EBADF')
    expect(client.state).toBe('open')
    expect(client.send(new Uint8Array(1))).toBe(true)
  })

  it('checks options', () => {
    expect(() => listen(address(), { maxFrameSize: 0 })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_ARGUMENT' }))
    expect(() => listen(address(), { maxFdsPerFrame: 253 })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_ARGUMENT' }))
    expect(() => listen(address(), { maxFrameSize: 1 << 20 })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_ARGUMENT' }))
    expect(() => listen(address(), { authorize: 1 as never })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_ARGUMENT' }))
  })

  it('back-pressures: false at the high-water mark, then drain; the queue keeps its own fd copies', async () => {
    const { client, accepted } = await pair({ readHighWaterMark: 4 }, { highWaterMark: 8 })
    // Nobody reads on the accepted side yet: the kernel buffer fills, then our queue.
    let sent = 0
    let ok = true
    const segment = memfd(77)
    while (ok) {
      ok = client.send(new Uint8Array(4096), [segment.fd])
      sent++
    }
    expect(client.writableLength).toBe(8)
    expect(client.writableNeedDrain).toBe(true)
    segment.close() // queued frames hold duplicates: they still carry the memfd
    const drained = once(client, 'drain')
    let received = 0
    accepted.on('message', ({ fds }: Message) => {
      expect(readFdU32(fds[0]!)).toBe(77)
      closeSync(fds[0]!)
      received++
    })
    await drained
    expect(client.writableLength).toBe(0)
    while (received < sent) await new Promise((resolve) => setTimeout(resolve, 5))
    expect(received).toBe(sent)
  })

  it('buffers up to readHighWaterMark frames for a consumer that is not there yet, then stops reading', async () => {
    const { client, accepted } = await pair({ readHighWaterMark: 5 })
    for (let i = 0; i < 50; i++) client.send(Uint8Array.of(i))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(accepted.readableLength).toBe(5)
    const got: number[] = []
    accepted.on('message', ({ data }: Message) => got.push(data[0]!))
    while (got.length < 50) await new Promise((resolve) => setTimeout(resolve, 5))
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => i))
  })

  it('close() flushes queued frames, then the peer sees ERR_FDPASS_PEER_CLOSED; idempotent', async () => {
    const { client, accepted } = await pair({ readHighWaterMark: 1 }, { highWaterMark: 1000 })
    let sent = 0
    while (client.writableLength < 20) {
      client.send(new Uint8Array(8192).fill(sent & 0xff))
      sent++
    }
    const closing = client.close()
    expect(client.state).toBe('closing')
    expect(() => client.send(new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_CLOSED' }))
    let received = 0
    for await (const { data } of accepted) {
      expect(data[0]).toBe(received & 0xff)
      received++
    }
    await closing
    await client.close()
    expect(received).toBe(sent)
    expect(await client.closed).toBeUndefined()
    expect(await accepted.closed).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
  })

  it('destroy(err) stops at once, closes every fd it held, reports err; idempotent', async () => {
    const baseline = fdCount()
    const { client, accepted, server } = await pair({ readHighWaterMark: 2 })
    const segment = memfd(5)
    // Frames with fds buffered (unclaimed) on the accepted side, and queued on the client.
    while (client.send(new Uint8Array(8192), [segment.fd])) {}
    segment.close()
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(accepted.readableLength).toBe(2)
    const events: unknown[] = []
    client.on('close', (reason) => events.push(['close', reason]))
    const err = new Error('enough')
    await Promise.all([client.destroy(err), client.destroy()])
    expect(await client.closed).toBe(err)
    await new Promise((resolve) => setImmediate(resolve))
    expect(events).toEqual([['close', err]]) // no 'error' event without a listener
    await accepted.destroy()
    await server.close()
    expect(fdCount()).toBe(baseline)
  })

  it("emits 'error' for a peer's bad frame only when someone listens", async () => {
    const { client, accepted } = await pair({ maxFrameSize: 10 }, { maxFrameSize: 100 })
    const errors: unknown[] = []
    accepted.on('error', (e) => errors.push(e))
    client.send(new Uint8Array(11))
    const reason = await accepted.closed
    await new Promise((resolve) => setImmediate(resolve))
    expect(reason).toMatchObject({ code: 'ERR_FDPASS_FRAME_TOO_LARGE' })
    expect(errors).toEqual([reason])
  })

  it('works with await using', async () => {
    const addr = address()
    await using server = listen(addr)
    let closedClient: Channel
    {
      await using client = await connect(addr)
      closedClient = client
      expect(client.state).toBe('open')
    }
    expect(closedClient.state).toBe('closed')
    expect(server.listening).toBe(true)
  })

  it('async iterator ends when the peer closes; frames already received are yielded first', async () => {
    const { client, accepted } = await pair()
    for (let i = 0; i < 10; i++) client.send(Uint8Array.of(i))
    await client.close()
    const got: number[] = []
    for await (const { data } of accepted) got.push(data[0]!)
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  })
})

describe('listen and connect', () => {
  it('connect rejects with coded errors: nobody there, no such path, bad address', async () => {
    await expect(connect(address())).rejects.toMatchObject({ code: 'ERR_FDPASS_ECONNREFUSED', errno: -111 })
    await expect(connect(join(tmpdir(), `nope-${process.pid}.sock`))).rejects.toMatchObject({ code: 'ERR_FDPASS_ENOENT' })
    await expect(connect('@')).rejects.toMatchObject({ code: 'ERR_FDPASS_INVALID_ADDRESS' })
  })

  it('uses exact-length abstract names: a node:net server on the padded name is not met', async () => {
    const name = `ipc-pubsub-fdpass-net-${process.pid}`
    const netServer = createServer()
    await new Promise<void>((resolve) => netServer.listen(`\0${name}`, resolve))
    try {
      await expect(connect(`@${name}`)).rejects.toMatchObject({ code: 'ERR_FDPASS_ECONNREFUSED' })
      const server = listen(`@${name}`) // a different name to the kernel: no EADDRINUSE
      await server.close()
    } finally {
      netServer.close()
    }
  })

  it('supports async authorize on the server and authorize on the client', async () => {
    const addr = address()
    const server = listen(addr, { authorize: async (peer) => peer.pid === process.pid })
    open.servers.push(server)
    const client = await connect(addr)
    open.channels.push(client)
    await expect(connect(addr, { authorize: () => false })).rejects.toMatchObject({ code: 'ERR_FDPASS_UNAUTHORIZED' })
    const refusing = listen(address(), { authorize: async () => false })
    open.servers.push(refusing)
    await expect(connect(refusing.address)).rejects.toMatchObject({ code: 'ERR_FDPASS_UNAUTHORIZED' })
  })

  it('connect honours an AbortSignal while waiting to be admitted', async () => {
    let admit!: (ok: boolean) => void
    const server = listen(address(), { authorize: () => new Promise<boolean>((resolve) => (admit = resolve)) })
    open.servers.push(server)
    const controller = new AbortController()
    const pending = connect(server.address, { signal: controller.signal })
    await new Promise((resolve) => setTimeout(resolve, 20))
    controller.abort()
    await expect(pending).rejects.toMatchObject({ code: 'ERR_FDPASS_ABORTED' })
    admit(true)
  })

  it('filesystem paths: stale file is EADDRINUSE, unlinkStale replaces it, close() unlinks', async () => {
    const path = join(tmpdir(), `ipc-pubsub-fdpass-${process.pid}-${++n}.sock`)
    const first = listen(path)
    expect(existsSync(path)).toBe(true)
    const client = await connect(path)
    await client.close()
    expect(() => listen(path)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_EADDRINUSE' }))
    // While a server accepts on it, unlinkStale does not steal the path.
    expect(() => listen(path, { unlinkStale: true })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_EADDRINUSE' }))
    await first.close()
    expect(existsSync(path)).toBe(false)
    // A stale socket file, as a crashed server leaves: a process bound it and exited.
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`])
    expect(existsSync(path)).toBe(true)
    expect(() => listen(path)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_EADDRINUSE' }))
    const replaced = listen(path, { unlinkStale: true })
    await replaced.close()
    expect(existsSync(path)).toBe(false)
    // A file that is not a socket is never unlinked.
    writeFileSync(path, 'data')
    expect(() => listen(path, { unlinkStale: true })).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_EADDRINUSE' }))
    expect(readFileSync(path, 'utf8')).toBe('data')
    unlinkSync(path)
  })
})

describe('limits at the edges', () => {
  it('a client with a maxFrameSize smaller than the hello still connects', async () => {
    const { client, accepted } = await pair({ maxFrameSize: 2 }, { maxFrameSize: 2 })
    client.send(Uint8Array.of(1, 2))
    const [message] = (await once(accepted, 'message')) as [Message]
    expect([...message.data]).toEqual([1, 2])
  })

  it.each([
    ['a wrong greeting', Buffer.from('hello!!!')],
    ['an oversize greeting', Buffer.alloc(5000)],
  ])('connect to a raw server that sends %s fails with ERR_FDPASS_PROTOCOL', async (_, greeting) => {
    const baseline = fdCount()
    const addr = address()
    const listener = native.socketSeqpacket()
    native.bindFd(listener, parseAddress(addr).sockaddr)
    native.listenFd(listener, 8)
    const pending = connect(addr)
    let fd = -1
    while (fd < 0) {
      await new Promise((resolve) => setImmediate(resolve))
      fd = native.acceptFd(listener)
    }
    expect(native.sendFrame(fd, greeting, [])).toBe(greeting.length)
    await expect(pending).rejects.toMatchObject({ code: 'ERR_FDPASS_PROTOCOL' })
    native.closeFd(fd)
    native.closeFd(listener)
    expect(fdCount()).toBe(baseline)
  })
})

describe('a paused reader', () => {
  it('keeps frames in the kernel while paused, and after the peer is gone still yields them all, then ends', async () => {
    const baseline = fdCount()
    const { client, accepted, server } = await pair({ readHighWaterMark: 2 })
    const segment = memfd(3)
    for (let i = 0; i < 10; i++) client.send(Uint8Array.of(i), [segment.fd])
    segment.close()
    await client.close()
    await new Promise((resolve) => setTimeout(resolve, 50))
    // Paused at the mark; the peer's end-of-stream has been seen but not acted on.
    expect(accepted.readableLength).toBe(2)
    expect(accepted.state).toBe('open')
    const got: number[] = []
    for await (const { data, fds } of accepted) {
      expect(readFdU32(fds[0]!)).toBe(3)
      closeSync(fds[0]!)
      got.push(data[0]!)
    }
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(await accepted.closed).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
    await server.close()
    expect(fdCount()).toBe(baseline)
  })

  it('an iterator waiting on a channel that is destroyed ends', async () => {
    const { accepted } = await pair()
    const iterator = accepted[Symbol.asyncIterator]()
    const next = iterator.next()
    await accepted.destroy()
    expect(await next).toEqual({ done: true, value: undefined })
  })
})

describe('ref and unref', () => {
  it('an unref()ed server and channel let the process exit', () => {
    const script = `
      import { listen, connect } from ${JSON.stringify(new URL('./index.ts', import.meta.url).pathname)}
      const server = listen('@ipc-pubsub-fdpass-unref-' + process.pid).unref()
      server.on('connection', (accepted) => accepted.unref())
      const channel = (await connect(server.address)).unref()
      console.log(channel.state)
    `
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    })
    // Without the unref() calls the child would run until the 20 s timeout killed it.
    expect(result.stdout.trim()).toBe('open')
    expect(result.status).toBe(0)
  })
})

describe('frames round-trip exactly (property)', () => {
  it('any sequence of frames within the limits arrives identical and in order', async () => {
    const { client, accepted } = await pair({ maxFrameSize: 4096, maxFdsPerFrame: 8 }, { maxFrameSize: 4096, maxFdsPerFrame: 8 })
    const pool = [memfd(0), memfd(1), memfd(2)]
    const frame = fc
      .record({
        data: fc.uint8Array({ minLength: 0, maxLength: 4096 }),
        fds: fc.array(fc.integer({ min: 0, max: pool.length - 1 }), { maxLength: 8 }),
      })
      .filter((f) => f.data.length > 0 || f.fds.length > 0)
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 40 }), async (frames) => {
        for (const f of frames) {
          if (!client.send(f.data, f.fds.map((i) => pool[i]!.fd))) await once(client, 'drain')
        }
        for (const f of frames) {
          const [message] = (await once(accepted, 'message')) as [Message]
          expect(Buffer.from(message.data).equals(Buffer.from(f.data))).toBe(true)
          expect(message.fds.map(readFdU32)).toEqual(f.fds)
          for (const fd of message.fds) closeSync(fd)
        }
      }),
      { numRuns: 60, seed: 42 },
    )
    for (const segment of pool) segment.close()
  })

  it('the largest frame allowed (MAX_FRAME_SIZE) goes through with the most fds allowed', async () => {
    const { client, accepted } = await pair(
      { maxFrameSize: MAX_FRAME_SIZE, maxFdsPerFrame: MAX_FDS_PER_FRAME },
      { maxFrameSize: MAX_FRAME_SIZE, maxFdsPerFrame: MAX_FDS_PER_FRAME },
    )
    const segment = memfd(11)
    const data = new Uint8Array(MAX_FRAME_SIZE).map((_, i) => i & 0xff)
    client.send(data, Array.from({ length: MAX_FDS_PER_FRAME }, () => segment.fd))
    segment.close()
    const [message] = (await once(accepted, 'message')) as [Message]
    expect(Buffer.from(message.data).equals(Buffer.from(data))).toBe(true)
    expect(message.fds).toHaveLength(MAX_FDS_PER_FRAME)
    expect(new Set(message.fds.map(readFdU32))).toEqual(new Set([11]))
    for (const fd of message.fds) closeSync(fd)
  })
})
