// Baseline: node:net over a Unix stream socket, length-prefixed frames. The publisher
// listens; each subscriber connects. Back-pressure is the stream's: wait for 'drain'.
import { once } from 'node:events'
import { createConnection, createServer, type Socket } from 'node:net'
import { FrameReader, frameHeader } from '../frames.js'
import type { Job } from '../job.js'
import type { Handler, PublisherSide, SubscriberSide, TransportModule } from './types.js'
import { settle } from './types.js'

// An abstract socket name (leading NUL): nothing on disk to leave behind if a run is killed.
const path = (job: Job): string => `\0${job.rendezvous}`
const noop = (): void => {}

function write(socket: Socket, bytes: Uint8Array): Promise<void> | undefined {
  socket.cork()
  socket.write(frameHeader(bytes.length))
  const ok = socket.write(bytes)
  socket.uncork()
  if (ok) return undefined
  return once(socket, 'drain').then(noop)
}

function read(socket: Socket, handler: Handler): void {
  const reader = new FrameReader()
  socket.on('data', (chunk: Buffer) => {
    for (const frame of reader.push(chunk)) handler(frame, noop)
  })
}

export const net: TransportModule = {
  spawnsSubscribers: false,

  async publisher(job, onReply) {
    const address = path(job)
    const sockets: Socket[] = []
    const server = createServer((socket) => {
      if (sockets.length === 0) read(socket, onReply)
      sockets.push(socket)
      server.emit('attached')
    })
    server.listen(address)
    await once(server, 'listening')
    const side: PublisherSide = {
      async attached(count) {
        while (sockets.length < count) await once(server, 'attached')
      },
      send(bytes) {
        const pending: Promise<void>[] = []
        for (const socket of sockets) {
          const wait = write(socket, bytes)
          if (wait) pending.push(wait)
        }
        return settle(pending)
      },
      async close() {
        for (const socket of sockets) socket.destroy()
        server.close()
      },
    }
    return side
  },

  async subscriber(job, onMessage) {
    const socket = createConnection(path(job))
    read(socket, onMessage)
    await once(socket, 'connect')
    const side: SubscriberSide = {
      reply: (bytes) => write(socket, bytes),
      async close() {
        socket.destroy()
      },
    }
    return side
  },
}
