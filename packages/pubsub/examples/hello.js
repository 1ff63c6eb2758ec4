// Hello world: this process subscribes, and a child process it starts publishes to it.
// Run: node packages/pubsub/examples/hello.js (after `pnpm build`).
import { fork } from 'node:child_process'
import { connect } from '@ipc-pubsub/pubsub'

const node = await connect({ domain: 'hello' })

if (process.argv[2] === 'publisher') {
  const greetings = node.publisher('greetings')
  await greetings.waitForSubscribers()
  for (let i = 1; i <= 3; i++) greetings.publish(`hello #${i} from pid ${process.pid}`)
  await node.close() // delivers what was published, then leaves
} else {
  const greetings = node.subscribe('greetings')
  fork(new URL(import.meta.url).pathname, ['publisher'])
  let count = 0
  for await (const msg of greetings) {
    console.log(`${msg.text()} (seq ${msg.seq}, ${Number(process.hrtime.bigint() - msg.timestamp) / 1000} µs in flight)`)
    msg.release()
    if (++count === 3) break // leaving the loop closes the subscription
  }
  await node.close()
}
