// Binary frames: a publisher waits until a subscriber is there (waitForSubscribers), then
// streams 4 MiB frames; the subscriber reads them in place, zero-copy, from shared memory.
// Run: node packages/pubsub/examples/frames.js (after `pnpm build`).
import { fork } from 'node:child_process'
import { connect } from '@ipc-pubsub/pubsub'

const WIDTH = 2048
const HEIGHT = 2048 // 4 MiB of 8-bit pixels
const FRAMES = 60

const node = await connect({ domain: 'frames' })

if (process.argv[2] === 'subscriber') {
  const frames = node.subscribe('camera/gray', { queueSize: 4 })
  let received = 0
  for await (const frame of frames) {
    // frame.data is the publisher's frame itself (mapped read-only), not a copy.
    let sum = 0
    for (let i = 0; i < frame.data.length; i += 4096) sum += frame.data[i]
    const latencyMs = Number(process.hrtime.bigint() - frame.timestamp) / 1e6
    if (frame.seq % 10 === 0) {
      console.log(`frame ${frame.seq}: ${frame.data.length} bytes, mean ${(sum / (frame.data.length / 4096)).toFixed(1)}, ${latencyMs.toFixed(2)} ms, lost ${frame.lost}`)
    }
    frame.release()
    if (++received + frame.lost >= FRAMES) break
  }
  await node.close()
} else {
  const camera = node.publisher('camera/gray')
  const child = fork(new URL(import.meta.url).pathname, ['subscriber'])
  // Without a subscriber publish() does nothing and returns false: wait for one first.
  await camera.waitForSubscribers({ signal: AbortSignal.timeout(5000) })
  const pixels = new Uint8Array(WIDTH * HEIGHT)
  for (let n = 1; n <= FRAMES; n++) {
    pixels.fill(n % 256)
    camera.publish(pixels)
    await new Promise((resolve) => setTimeout(resolve, 1000 / 30))
  }
  await new Promise((resolve) => child.on('exit', resolve))
  await node.close()
}
