// Lossless delivery with back-pressure: the subscriber asks for policy 'wait', so a fast
// publisher is held back (publish() returns false) instead of its messages being dropped.
// Run: node packages/pubsub/examples/lossless.js (after `pnpm build`).
import { fork } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect } from '@ipc-pubsub/pubsub'

const COUNT = 200
const node = await connect({ domain: 'lossless' })

if (process.argv[2] === 'subscriber') {
  // A slow consumer: 2 ms per message, a queue of 8.
  const jobs = node.subscribe('jobs', { policy: 'wait', queueSize: 8 })
  let received = 0
  let lost = 0
  for await (const job of jobs) {
    lost += job.lost
    await sleep(2)
    job.release()
    if (++received === COUNT) break
  }
  console.log(`subscriber: received ${received}, lost ${lost}`)
  await node.close()
} else {
  const jobs = node.publisher('jobs')
  const child = fork(new URL(import.meta.url).pathname, ['subscriber'])
  await jobs.waitForSubscribers()
  let waits = 0
  for (let i = 1; i <= COUNT; i++) {
    // false = not sent: the subscriber's queue is full. ready() resolves when there is room.
    while (!jobs.publish(JSON.stringify({ job: i }))) {
      waits++
      await jobs.ready()
    }
  }
  console.log(`publisher: sent ${COUNT}, waited for room ${waits} times`)
  await new Promise((resolve) => child.on('exit', resolve))
  await node.close()
}
