import { closeSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { describe, expect, it } from 'vitest'
import { Segment } from '@ipc-pubsub/shm'
import { type Channel, listen } from '../src/index.ts'
import { fdCount, settleFdCount, spawnChild, uniqueAddress } from './helpers.ts'

// The one timing requirement: the survivor sees the close within 100 ms of the kill.
// Measured from just before kill() to the 'close' event; the kernel closes the dead
// process's socket during its exit, and our poll handle wakes on the hang-up at once.
const CLOSE_WITHIN_MS = 100

async function acceptOne(address: string): Promise<{ channel: Promise<Channel>; close: () => Promise<void> }> {
  const server = listen(address)
  const channel = new Promise<Channel>((resolve) => server.once('connection', resolve))
  return { channel, close: () => server.close() }
}

describe('kill -9 of the peer mid-stream', () => {
  it('a reading survivor sees a close with a reason within 100 ms and leaks nothing', async () => {
    const baseline = fdCount()
    const address = uniqueAddress('kill-read')
    const server = await acceptOne(address)
    const child = spawnChild('stream-client', [address])
    const channel = await server.channel
    let received = 0
    channel.on('message', ({ fds }) => {
      received++
      for (const fd of fds) closeSync(fd)
    })
    await child.next('streaming')
    // Mid-stream: frames are flowing in when the kill comes.
    while (received < 1000) await new Promise((resolve) => setTimeout(resolve, 5))
    const closedAt = new Promise<number>((resolve) => channel.once('close', () => resolve(performance.now())))
    const killedAt = performance.now()
    child.process.kill('SIGKILL')
    const elapsed = (await closedAt) - killedAt
    const reason = await channel.closed
    expect(received).toBeGreaterThanOrEqual(1000)
    expect(reason).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
    expect(elapsed).toBeLessThan(CLOSE_WITHIN_MS)
    expect(channel.state).toBe('closed')
    await server.close()
    await child.exited
    expect(await settleFdCount(baseline)).toBe(baseline)
  })

  it('a writing survivor with a full queue sees a close with a reason within 100 ms and leaks nothing', async () => {
    const baseline = fdCount()
    const address = uniqueAddress('kill-write')
    const server = await acceptOne(address)
    const child = spawnChild('sink-client', [address])
    const channel = await server.channel
    await child.next('connected')
    const segment = Segment.create(4096)
    // Queue frames (with fd duplicates) faster than the child can read, so some wait.
    while (channel.writableLength < 32) channel.send(new Uint8Array(1024), [segment.fd])
    expect(channel.writableLength).toBeGreaterThan(0)
    const closedAt = new Promise<number>((resolve) => channel.once('close', () => resolve(performance.now())))
    const killedAt = performance.now()
    child.process.kill('SIGKILL')
    const elapsed = (await closedAt) - killedAt
    expect(await channel.closed).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
    expect(elapsed).toBeLessThan(CLOSE_WITHIN_MS)
    expect(channel.writableLength).toBe(0) // the queued duplicates were closed
    expect(() => channel.send(new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_CLOSED' }))
    segment.close()
    await server.close()
    await child.exited
    expect(await settleFdCount(baseline)).toBe(baseline)
  })
})
