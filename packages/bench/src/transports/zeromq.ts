// ZeroMQ (the `zeromq` npm package, libzmq inside) PUSH/PULL over ipc://. PUSH load-balances
// rather than copies, so fan-out uses one PUSH socket per subscriber. Replies (ping-pong)
// travel on a second PUSH/PULL pair. Back-pressure is the send high-water mark: send()
// resolves once the message is queued, and only one send may be in flight per socket.
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pull, Push } from 'zeromq'
import type { Job } from '../job.js'
import type { Handler, PublisherSide, SubscriberSide, TransportModule } from './types.js'
import { settle } from './types.js'

const file = (job: Job, suffix: string): string => join(tmpdir(), `${job.rendezvous}-${suffix}.zmq`)
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
    const files: string[] = []
    for (let index = 0; index < job.case.subscribers; index++) {
      const push = new Push()
      const path = file(job, `data-${index}`)
      rmSync(path, { force: true })
      await push.bind(`ipc://${path}`)
      pushes.push(push)
      files.push(path)
    }
    const replies = new Pull()
    const repliesPath = file(job, 'reply')
    rmSync(repliesPath, { force: true })
    await replies.bind(`ipc://${repliesPath}`)
    files.push(repliesPath)
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
        for (const path of files) rmSync(path, { force: true })
      },
    }
    return side
  },

  async subscriber(job, onMessage) {
    const pull = new Pull()
    pull.connect(`ipc://${file(job, `data-${job.index}`)}`)
    const push = new Push()
    push.connect(`ipc://${file(job, 'reply')}`)
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
