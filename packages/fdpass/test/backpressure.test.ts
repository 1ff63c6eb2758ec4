import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { Segment } from '@ipc-pubsub/shm'
import { type Channel, listen } from '../src/index.ts'
import { fdCount, settleFdCount, spawnChild, u32, uniqueAddress } from './helpers.ts'

describe('a burst that outruns the receiver', () => {
  it('engages back-pressure at both ends, keeps memory bounded, loses and reorders nothing', async () => {
    const count = 20_000
    const highWaterMark = 32
    const readHighWaterMark = 16
    const baseline = fdCount()
    const address = uniqueAddress('burst')
    const server = listen(address, { highWaterMark, maxQueuedFrames: 64 })
    const accepted = new Promise<Channel>((resolve) => server.once('connection', resolve))
    const child = spawnChild('slow-reader', [address, String(count), String(readHighWaterMark)])
    const channel = await accepted
    await child.next('connected')
    const segment = Segment.create(4096)
    new DataView(segment.buffer).setUint32(0, 0xfeed, true)
    let refusals = 0
    let maxQueued = 0
    for (let i = 0; i < count; i++) {
      const ok = channel.send(u32(i), [segment.fd])
      maxQueued = Math.max(maxQueued, channel.writableLength)
      if (!ok) {
        refusals++
        expect(channel.writableNeedDrain).toBe(true)
        await once(channel, 'drain')
        expect(channel.writableLength).toBe(0)
      }
    }
    segment.close()
    const done = await child.next('done', 120_000)
    // Back-pressure engaged: the kernel buffer filled, then our queue reached its mark.
    expect(refusals).toBeGreaterThan(0)
    // Bounded: the sender's queue never passed the high-water mark, the receiver never
    // buffered more than its readHighWaterMark (the rest waited in the kernel).
    expect(maxQueued).toBeLessThanOrEqual(highWaterMark)
    expect(done.maxReadable).toBeLessThanOrEqual(readHighWaterMark)
    expect(done).toMatchObject({ received: count, errors: 0 })
    await channel.closed
    await server.close()
    await child.exited
    expect(await settleFdCount(baseline)).toBe(baseline)
  })

  it('refuses with ERR_FDPASS_QUEUE_FULL instead of growing past maxQueuedFrames', async () => {
    const baseline = fdCount()
    const address = uniqueAddress('queue-full')
    const server = listen(address, { maxQueuedFrames: 8, highWaterMark: 4 })
    const accepted = new Promise<Channel>((resolve) => server.once('connection', resolve))
    const child = spawnChild('slow-reader', [address, '1000000', '4'])
    const channel = await accepted
    await child.next('connected')
    const frame = new Uint8Array(8192)
    let error: unknown
    let sent = 0
    try {
      for (;;) {
        channel.send(frame)
        sent++
      }
    } catch (e) {
      error = e
    }
    expect(error).toMatchObject({ code: 'ERR_FDPASS_QUEUE_FULL' })
    expect(channel.writableLength).toBe(8)
    expect(sent).toBeGreaterThan(8)
    await channel.destroy()
    child.process.kill('SIGKILL')
    await child.exited
    await server.close()
    expect(await settleFdCount(baseline)).toBe(baseline)
  })
})
