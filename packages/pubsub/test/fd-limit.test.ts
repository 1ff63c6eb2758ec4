// A subscriber process that runs out of file descriptors (a low RLIMIT_NOFILE, set with
// prlimit once it has joined): with the segment transport every message carries an fd, so
// its links break (the kernel drops a frame's fds: MSG_CTRUNC) and its data socket cannot
// accept the reconnect (EMFILE) until the consumer frees some. That must not be silent: the
// subscriber's node reports a coded error, and every message it missed is counted in `lost`.
import { execFileSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { killAll, Peer, type SubStats, uniqueDomain } from './helpers.ts'

afterEach(killAll)

describe('a subscriber out of file descriptors', () => {
  // 'wait' is lossless only while its link holds: frames unread on a link that broke are
  // gone, and counted in `lost` like any other loss.
  it.each(['drop-oldest', 'wait'] as const)("'%s': reports ERR_PUBSUB_LINK (cause ERR_FDPASS_EMFILE), and received + sum(lost) = published", async (policy) => {
    const domain = uniqueDomain('fd-limit')
    // The segment transport: the pool (the default) passes no fd per message.
    const [pub, sub] = await Promise.all([
      Peer.start('publisher', [], { transport: 'segment' }),
      Peer.start('subscriber', [], { transport: 'segment' }),
    ])
    // The publisher holds the hub: the starved process only subscribes.
    expect((await pub.connect(domain)).isHub).toBe(true)
    await sub.connect(domain)
    // A slow consumer with a queue far larger than the fds left: the queue fills the table.
    const subKey = await sub.subscribe('frames', { policy, queueSize: 64, delayMs: 2 })
    const pubKey = await pub.publisher('frames')
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    const { fds } = await sub.counts()
    const limit = fds + 16
    execFileSync('prlimit', [`--pid=${sub.pid}`, `--nofile=${limit}:${limit}`])

    const burst = await pub.publish(pubKey, 4096, 1000, { lossless: policy === 'wait' })
    expect(burst.lastSeq).toBe(1000)
    // `lost` is counted at the next message handed out: publish one at a time until the last
    // one published has arrived (a link that is down refuses it: then it is retried).
    let stats: SubStats = await sub.stats(subKey)
    let last = burst.lastSeq
    for (let attempt = 0; stats.lastSeq !== last && attempt < 100; attempt++) {
      last = (await pub.publish(pubKey, 4096, 1)).lastSeq
      const deadline = Date.now() + 1000
      for (;;) {
        stats = await sub.stats(subKey)
        if (stats.lastSeq === last || Date.now() >= deadline) break
        await sleep(20)
      }
    }
    expect(stats.lastSeq).toBe(last)
    expect(stats).toMatchObject({ bad: 0, outOfOrder: 0, closedWith: null })
    expect(stats.received + stats.lost).toBe(last)
    console.log(
      `[fd-limit] ${policy}, limit ${limit}: ${stats.received} received, ${stats.lost} lost of ${last}; ` +
        `node errors: ${[...new Set(sub.nodeErrors.map((error) => `${error.code}/${error.cause}`))].join(', ')}`,
    )
    // The side that ran out says so; the publisher has nothing to report.
    expect(sub.nodeErrors.some((error) => error.code === 'ERR_PUBSUB_LINK' && error.cause === 'ERR_FDPASS_EMFILE')).toBe(true)
    expect(pub.nodeErrors).toEqual([])
  })
})
