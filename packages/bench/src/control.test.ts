import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ControlSocket, LineDecoder } from './control.js'

describe('LineDecoder', () => {
  it('decodes one JSON value per line', () => {
    const decoder = new LineDecoder()
    expect(decoder.push('{"type":"a"}\n{"type":"b","n":2}\n')).toEqual([{ type: 'a' }, { type: 'b', n: 2 }])
  })

  it('keeps a partial line until the rest arrives', () => {
    const decoder = new LineDecoder()
    expect(decoder.push('{"type":')).toEqual([])
    expect(decoder.push('"a"}\n{"ty')).toEqual([{ type: 'a' }])
    expect(decoder.push('pe":"b"')).toEqual([])
    expect(decoder.push('}\n')).toEqual([{ type: 'b' }])
  })

  it('reassembles lines split at every character', () => {
    const text = '{"type":"hello","id":"x:pub","pid":42}\n[1,2,3]\n"s\\nt"\n7\n'
    for (let at = 0; at <= text.length; at++) {
      const decoder = new LineDecoder()
      const values = [...decoder.push(text.slice(0, at)), ...decoder.push(text.slice(at))]
      expect(values, `split at ${at}`).toEqual([{ type: 'hello', id: 'x:pub', pid: 42 }, [1, 2, 3], 's\nt', 7])
    }
  })

  it('skips empty lines', () => {
    expect(new LineDecoder().push('\n\n{"a":1}\n\n')).toEqual([{ a: 1 }])
  })

  it('throws on a line that is not JSON', () => {
    expect(() => new LineDecoder().push('not json\n')).toThrow(SyntaxError)
    const decoder = new LineDecoder()
    expect(decoder.push('{"a":')).toEqual([])
    expect(() => decoder.push('}\n')).toThrow(SyntaxError)
  })
})

type Msg = { type: 'a'; n: number } | { type: 'b'; n: number } | { type: 'error'; message: string } | { type: 'c' }

interface Pair {
  server: Server
  client: ControlSocket<Msg, Msg>
  peer: ControlSocket<Msg, Msg>
  peerSocket: Socket
}

let counter = 0
const open: Pair[] = []

async function pair(): Promise<Pair> {
  const path = join(tmpdir(), `ipc-pubsub-bench-control-${process.pid}-${++counter}.sock`)
  const server = createServer()
  server.listen(path)
  await once(server, 'listening')
  const accepted = once(server, 'connection') as Promise<[Socket]>
  const client = await ControlSocket.connect<Msg, Msg>(path)
  const [peerSocket] = await accepted
  const peer = new ControlSocket<Msg, Msg>(peerSocket)
  const p = { server, client, peer, peerSocket }
  open.push(p)
  return p
}

afterEach(async () => {
  for (const p of open.splice(0)) {
    p.client.socket.destroy()
    p.peerSocket.destroy()
    await new Promise<void>((resolve) => p.server.close(() => resolve()))
  }
})

/** Settles after `promise` settles, or reports that it is still pending. */
async function state(promise: Promise<unknown>): Promise<'pending' | 'settled'> {
  const marker = Symbol('pending')
  const result = await Promise.race([promise.then(
    () => 'settled' as const,
    () => 'settled' as const,
  ), new Promise<typeof marker>((resolve) => setImmediate(() => resolve(marker)))])
  return result === marker ? 'pending' : 'settled'
}

describe('ControlSocket', () => {
  it('delivers messages by type, in order', async () => {
    const { client, peer } = await pair()
    peer.send({ type: 'a', n: 1 })
    peer.send({ type: 'a', n: 2 })
    expect(await client.next('a')).toEqual({ type: 'a', n: 1 })
    expect(await client.next('a')).toEqual({ type: 'a', n: 2 })
    client.send({ type: 'b', n: 3 })
    expect(await peer.next('b')).toEqual({ type: 'b', n: 3 })
  })

  it('returns a message that arrived before next() was called', async () => {
    const { client, peer } = await pair()
    peer.send({ type: 'a', n: 1 })
    peer.send({ type: 'b', n: 2 })
    // Waiting for 'b' first guarantees 'a' is already in the inbox before anyone asks for it.
    expect(await client.next('b')).toEqual({ type: 'b', n: 2 })
    expect(await client.next('a')).toEqual({ type: 'a', n: 1 })
  })

  it('waits for a message that has not arrived yet', async () => {
    const { client, peer } = await pair()
    const waiting = client.next('c')
    expect(await state(waiting)).toBe('pending')
    peer.send({ type: 'c' })
    expect(await waiting).toEqual({ type: 'c' })
  })

  it('serves concurrent waits for different types', async () => {
    const { client, peer } = await pair()
    const a = client.next('a')
    const b = client.next('b')
    peer.send({ type: 'b', n: 2 })
    peer.send({ type: 'a', n: 1 })
    expect(await Promise.all([a, b])).toEqual([
      { type: 'a', n: 1 },
      { type: 'b', n: 2 },
    ])
  })

  it("rejects every wait when the peer sends { type: 'error' }, with its message", async () => {
    const { client, peer } = await pair()
    const waiting = client.next('a')
    peer.send({ type: 'error', message: 'segment mapping failed: ENOMEM' })
    await expect(waiting).rejects.toThrow('segment mapping failed: ENOMEM')
    await expect(client.next('b')).rejects.toThrow('segment mapping failed: ENOMEM')
  })

  it('still hands out a message of the wanted type that is queued with an error', async () => {
    const { client, peer } = await pair()
    peer.send({ type: 'a', n: 1 })
    peer.send({ type: 'error', message: 'late failure' })
    await expect(client.next('error')).resolves.toEqual({ type: 'error', message: 'late failure' })
    peer.send({ type: 'error', message: 'second' })
    expect(await client.next('a')).toEqual({ type: 'a', n: 1 })
    await expect(client.next('b')).rejects.toThrow('second')
  })

  it('rejects a wait when the connection closes', async () => {
    const { client, peer } = await pair()
    const waiting = expect(client.next('a')).rejects.toThrow("control channel closed while waiting for 'a'")
    expect(client.closed).toBe(false)
    await peer.end()
    await waiting
    expect(client.closed).toBe(true)
    await expect(client.next('b')).rejects.toThrow(/closed/)
  })

  it('rejects a wait when the peer is destroyed', async () => {
    const { client, peerSocket } = await pair()
    const waiting = expect(client.next('a')).rejects.toThrow(/closed while waiting for 'a'/)
    peerSocket.destroy()
    await waiting
  })

  it('hands out messages that arrived before the close, then rejects', async () => {
    const { client, peer } = await pair()
    const clientClosed = once(client.socket, 'close')
    peer.send({ type: 'a', n: 1 })
    await peer.end()
    await clientClosed
    expect(client.closed).toBe(true)
    expect(await client.next('a')).toEqual({ type: 'a', n: 1 })
    await expect(client.next('a')).rejects.toThrow(/closed/)
  })

  it('broken() stays pending while the connection is healthy and rejects when it closes', async () => {
    const { client, peer } = await pair()
    const broken = client.broken()
    const rejected = expect(broken).rejects.toThrow(/closed/)
    peer.send({ type: 'a', n: 1 })
    expect(await client.next('a')).toEqual({ type: 'a', n: 1 })
    expect(await state(broken)).toBe('pending')
    await peer.end()
    await rejected
  })

  it('broken() rejects when the peer reports an error', async () => {
    const { client, peer } = await pair()
    const broken = client.broken()
    peer.send({ type: 'error', message: 'worker crashed' })
    await expect(broken).rejects.toThrow('worker crashed')
  })

  it('closes the connection when the peer sends a line that is not JSON', async () => {
    const { client, peerSocket } = await pair()
    const waiting = expect(client.next('a')).rejects.toThrow(/closed/)
    peerSocket.write('this is not json\n')
    await waiting
    expect(client.closed).toBe(true)
  })

  it('send() after the socket is destroyed is a no-op, and end() twice is fine', async () => {
    const { client } = await pair()
    await client.end()
    expect(client.closed).toBe(true)
    expect(() => client.send({ type: 'c' })).not.toThrow()
    await expect(client.end()).resolves.toBeUndefined()
  })

  it('starts with pid 0', async () => {
    const { client } = await pair()
    expect(client.pid).toBe(0)
  })

  it('connect() rejects when nothing listens at the address', async () => {
    await expect(ControlSocket.connect(join(tmpdir(), `ipc-pubsub-bench-nobody-${process.pid}.sock`))).rejects.toThrow()
  })
})
