import { once } from 'node:events'
import { closeSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { type Channel, listen } from '../src/index.ts'
import { fdCount, readFdU32, readU32, settleFdCount, spawnChild, uniqueAddress } from './helpers.ts'

describe('two processes', () => {
  it('exchange 100,000 frames with a memfd each: in order, contents intact, no fd leaked', async () => {
    const count = 100_000
    const baseline = fdCount()
    const address = uniqueAddress('exchange')
    const server = listen(address)
    let expected = 0
    let errors = 0
    let serverChannel: Channel | undefined
    const echoed = new Promise<void>((resolve) => {
      server.once('connection', async (channel: Channel) => {
        serverChannel = channel
        // The parent checks what the child sent, then echoes it back with the same fd.
        for await (const { data, fds } of channel) {
          if (readU32(data) !== expected || fds.length !== 1 || readFdU32(fds[0]!) !== expected) errors++
          expected++
          const ok = channel.send(data, fds)
          for (const fd of fds) closeSync(fd) // ours to close: the peer got its own copy
          if (!ok) await once(channel, 'drain')
          if (expected === count) break
        }
        resolve()
      })
    })
    const child = spawnChild('exchange-client', [address, String(count)])
    const done = await child.next('done', 120_000)
    await echoed
    expect(done).toMatchObject({ received: count, errors: 0 })
    expect(done.after).toBe(done.baseline)
    expect(errors).toBe(0)
    expect(expected).toBe(count)
    const reason = await serverChannel!.closed
    expect(reason).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
    await server.close()
    await child.exited
    expect(await settleFdCount(baseline)).toBe(baseline)
  })
})
