// The README's smallest example: listen, connect, send a memfd, receive it.
// Run: node --import tsx examples/memfd.ts
import { Segment } from '@ipc-pubsub/shm'
import { connect, listen } from '../src/index.ts'

const server = listen('@my-app')
server.on('connection', (channel) => {
  channel.on('message', ({ data, fds }) => {
    const segment = Segment.fromFd(fds[0]!) // the segment now owns (and will close) the fd
    console.log(new TextDecoder().decode(data), '->', new TextDecoder().decode(segment.bytes.subarray(0, 5)))
    segment.close()
    void channel.close()
  })
})

const channel = await connect('@my-app')
const segment = Segment.create(4096)
segment.bytes.set(new TextEncoder().encode('hello'))
channel.send(new TextEncoder().encode('a memfd'), [segment.fd])
segment.close() // the peer got its own descriptor; ours can go at once
console.log('closed:', (await channel.closed)?.message) // the server closed after reading
await server.close()
