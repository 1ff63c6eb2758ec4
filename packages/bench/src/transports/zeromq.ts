// ZeroMQ (the `zeromq` npm package, libzmq inside) PUSH/PULL over ipc://. PUSH load-balances
// rather than copies, so fan-out uses one PUSH socket per subscriber. Replies (ping-pong)
// travel on a second PUSH/PULL pair. Back-pressure is the send high-water mark: send()
// resolves once the message is queued, and only one send may be in flight per socket. The
// high-water marks stay at ZeroMQ's defaults (1,000 messages each way), as users get them.
import { Pull, Push } from 'zeromq'
import type { Job } from '../job.js'
import type { Handler, PublisherSide, SubscriberSide, TransportModule } from './types.js'
import { settle } from './types.js'

// ipc://@name is an abstract socket name: nothing on disk to leave behind if a run is killed.
const endpoint = (job: Job, suffix: string): string => `ipc://@${job.rendezvous}-${suffix}`
const noop = (): void => {}

async function drain(pull: Pull, handler: Handler): Promise<void> {
  try {
    for await (const [frame] of pull) if (frame) handler(frame, noop)
  } catch (error) {
    // Closing the socket ends the loop with an error; anything else is real.
    if (!pull.closed) throw error
  }
}

export const zeromq: TransportModule = {
  spawnsSubscribers: false,

  async publisher(job, onReply) {
    const pushes: Push[] = []
    for (let index = 0; index < job.case.subscribers; index++) {
      const push = new Push()
      await push.bind(endpoint(job, `data-${index}`))
      pushes.push(push)
    }
    const replies = new Pull()
    await replies.bind(endpoint(job, 'reply'))
    void drain(replies, onReply)
    const side: PublisherSide = {
      // PUSH queues until a peer connects; the warm-up messages cover the attach.
      async attached() {},
      send(bytes) {
        if (pushes.length === 1) return (pushes[0] as Push).send(bytes)
        return settle(pushes.map((push) => push.send(bytes)))
      },
      async close() {
        for (const push of pushes) push.close()
        replies.close()
      },
    }
    return side
  },

  async subscriber(job, onMessage) {
    const pull = new Pull()
    pull.connect(endpoint(job, `data-${job.index}`))
    const push = new Push()
    push.connect(endpoint(job, 'reply'))
    void drain(pull, onMessage)
    const side: SubscriberSide = {
      reply: (bytes) => push.send(bytes),
      async close() {
        pull.close()
        push.close()
      },
    }
    return side
  },
}
