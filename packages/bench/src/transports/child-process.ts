// child_process IPC with serialization: 'advanced' (the V8 serializer, which carries typed
// arrays without base64 or JSON). IPC needs a parent and a child, so the publisher process
// forks its subscribers. Back-pressure: send() returns false once Node's backlog is too
// big; then wait for that send's callback.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { PublisherSide, SubscriberSide, TransportModule } from './types.js'
import { settle } from './types.js'

const READY = 'ipc-pubsub-bench:ready'
const noop = (): void => {}

type Sender = (message: unknown, callback: (error: Error | null) => void) => boolean

function sendWithBackPressure(send: Sender, bytes: Uint8Array): Promise<void> | undefined {
  let done!: () => void
  let failed!: (error: Error) => void
  let waiting = false
  const accepted = send(bytes, (error) => {
    if (!waiting) return
    if (error) failed(error)
    else done()
  })
  if (accepted) return undefined
  waiting = true
  return new Promise<void>((resolve, reject) => {
    done = resolve
    failed = reject
  })
}

export const childProcess: TransportModule = {
  spawnsSubscribers: true,

  async publisher(job, onReply, spawnSubscriber) {
    // This process is itself a bench worker: its script starts subscribers too.
    const worker = process.argv[1] as string
    const children: ChildProcess[] = []
    const ready: Promise<unknown>[] = []
    for (let index = 0; index < job.case.subscribers; index++) {
      const child = fork(worker, [JSON.stringify(spawnSubscriber(index))], {
        serialization: 'advanced',
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      ready.push(
        new Promise((resolve, reject) => {
          const onMessage = (message: unknown): void => {
            if (message === READY) {
              resolve(undefined)
              return
            }
            if (index === 0) onReply(message as Uint8Array, noop)
          }
          child.on('message', onMessage)
          child.once('exit', (code) => reject(new Error(`subscriber ${index} exited with ${code} before it was ready`)))
        }),
      )
      children.push(child)
    }
    const side: PublisherSide = {
      async attached() {
        await Promise.all(ready)
      },
      send(bytes) {
        const pending: Promise<void>[] = []
        for (const child of children) {
          const wait = sendWithBackPressure(child.send.bind(child) as Sender, bytes)
          if (wait) pending.push(wait)
        }
        return settle(pending)
      },
      async close() {
        await Promise.all(
          children.map(async (child) => {
            if (child.exitCode === null && child.signalCode === null) await once(child, 'exit')
          }),
        )
      },
    }
    // Surface an early death of a child as a failed attach, not an unhandled rejection.
    for (const promise of ready) promise.catch(noop)
    return side
  },

  async subscriber(_job, onMessage) {
    const send = process.send?.bind(process) as Sender | undefined
    if (send === undefined) throw new Error('child_process subscriber started without an IPC channel')
    process.on('message', (message) => onMessage(message as Uint8Array, noop))
    send(READY, noop)
    const side: SubscriberSide = {
      reply: (bytes) => sendWithBackPressure(send, bytes),
      async close() {
        process.disconnect()
      },
    }
    return side
  },
}
