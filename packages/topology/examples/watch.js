// Prints the topology changes of the `demo` domain. Run several:
//   node examples/watch.js a & node examples/watch.js b & node examples/watch.js c
// then stop one (or kill -9 the one that holds the hub) and watch the others.
import { join } from '@ipc-pubsub/topology'

const node = await join({ domain: 'demo', name: process.argv[2] ?? 'watcher' })
node.on('event', (change) => {
  const who = `${change.node.name} (${change.node.id})`
  const what = change.endpoint ? ` ${change.endpoint.role} of ${change.endpoint.topic}` : ''
  console.log(change.type, who + what, change.reason ?? '')
})
node.on('hub', (hub) => console.log('hub', hub.id, hub.self ? '(this process)' : ''))
process.on('SIGINT', () => node.close())
