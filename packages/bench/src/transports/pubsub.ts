// ipc-pubsub itself, one of its transports (TRANSPORTS). Both processes join a domain of their
// own; the publisher joins first and holds the hub. Subscriptions are lossless ('wait') so
// every transport delivers every message; queue sizes stay at their defaults.
import { connect, type Publisher, type TransportName } from '@ipc-pubsub/pubsub'
import type { Job } from '../job.js'
import type { PublisherSide, SubscriberSide, TransportModule } from './types.js'

const DATA = 'bench/data'
const REPLY = 'bench/reply'

// `ipc-pubsub:<transport>[+spin<µs>]`
const variantOf = (job: Job): { transport: TransportName; spinMicroseconds: number } => {
  const [transport, spin] = job.transport.slice('ipc-pubsub:'.length).split('+spin')
  return { transport: transport as TransportName, spinMicroseconds: spin === undefined ? 0 : Number(spin) }
}
// Domain names allow [A-Za-z0-9_.-], at most 64 characters.
const domainOf = (job: Job): string => job.rendezvous.replace(/[^A-Za-z0-9_.-]/g, '_').slice(-64)

/** publish(), and on back-pressure wait until it is accepted. */
function publishLossless(publisher: Publisher, bytes: Uint8Array): Promise<void> | undefined {
  if (publisher.publish(bytes)) return undefined
  return (async () => {
    do await publisher.ready()
    while (!publisher.publish(bytes))
  })()
}

export const pubsub: TransportModule = {
  spawnsSubscribers: false,

  async publisher(job, onReply) {
    const { transport, spinMicroseconds } = variantOf(job)
    const node = await connect({ domain: domainOf(job), name: 'bench-publisher', transport })
    const publisher = node.publisher(DATA, { spinMicroseconds })
    const replies = node.subscribe(REPLY, { policy: 'wait', spinMicroseconds })
    replies.on('message', (message) => onReply(message.data, () => message.release()))
    const side: PublisherSide = {
      async attached(count) {
        await publisher.waitForSubscribers({ count })
        if (job.case.kind === 'latency') await replies.waitForPublishers()
      },
      send: (bytes) => publishLossless(publisher, bytes),
      async close() {
        await node.close()
      },
    }
    return side
  },

  async subscriber(job, onMessage) {
    const { transport, spinMicroseconds } = variantOf(job)
    const node = await connect({ domain: domainOf(job), name: `bench-subscriber-${job.index}`, transport })
    const subscription = node.subscribe(DATA, { policy: 'wait', spinMicroseconds })
    subscription.on('message', (message) => onMessage(message.data, () => message.release()))
    const replies = job.case.kind === 'latency' && job.index === 0 ? node.publisher(REPLY, { spinMicroseconds }) : undefined
    await subscription.waitForPublishers()
    if (replies) await replies.waitForSubscribers()
    const side: SubscriberSide = {
      reply(bytes) {
        if (!replies) throw new Error('only subscriber 0 of a latency run replies')
        return publishLossless(replies, bytes)
      },
      async close() {
        await node.close()
      },
    }
    return side
  },
}
