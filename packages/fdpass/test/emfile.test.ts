import { describe, expect, it } from 'vitest'
import { Segment } from '@ipc-pubsub/shm'
import { type Channel, connect, listen } from '../src/index.ts'
import { spawnChild, u32, uniqueAddress } from './helpers.ts'

// Issue 12 item 5: running out of file descriptors must never lose data silently. The
// children run under `prlimit --nofile` and then fill their fd table to the brim, so the
// exhaustion happens exactly where the test wants it.
const NOFILE = 256

describe('a server whose process runs out of fds', () => {
  it('backs off instead of spinning, reports once per episode, and resumes by itself', async () => {
    const address = uniqueAddress('emfile-server')
    const child = spawnChild('emfile-server', [address], {}, { nofile: NOFILE })
    try {
      await child.next('ready')
      child.send('fill')
      await child.next('full')
      // Connects succeed in the kernel's backlog; admission waits for the server.
      const pending = Array.from({ length: 5 }, () => connect(address))
      for (const admitted of pending) admitted.catch(() => {}) // awaited below; a failed run kills the child
      expect(await child.next('server-error')).toMatchObject({ code: 'ERR_FDPASS_EMFILE' })
      // A second of exhaustion: the accept loop must neither spin nor report again. A loop
      // that retried at every wake-up would burn most of a core; the bound is generous
      // because this machine is shared (the issue asks for no spinning, not for a figure).
      await new Promise((resolve) => setTimeout(resolve, 1000))
      child.send('stats')
      const stats = (await child.next('stats')) as unknown as { errors: string[]; cpuMs: number }
      expect(stats.errors).toEqual(['ERR_FDPASS_EMFILE'])
      expect(stats.cpuMs).toBeLessThan(300)
      // Hovering at the limit: one slot frees, one connection is admitted, the next accept
      // fails again. Still the same episode: no second report.
      child.send('free-one')
      expect(await child.next('accepted')).toMatchObject({ count: 1 })
      await new Promise((resolve) => setTimeout(resolve, 200))
      child.send('stats')
      expect(((await child.next('stats')) as unknown as { errors: string[] }).errors).toEqual(['ERR_FDPASS_EMFILE'])
      // Fds come back: every waiting connection is admitted without anyone's help.
      child.send('free')
      const channels = await Promise.all(pending)
      expect(channels).toHaveLength(5)
      // A new episode is reported again.
      child.send('fill')
      await child.next('full')
      const late = connect(address)
      expect(await child.next('server-error')).toMatchObject({ code: 'ERR_FDPASS_EMFILE' })
      child.send('free')
      channels.push(await late)
      child.send('stats')
      expect(((await child.next('stats')) as unknown as { errors: string[] }).errors).toEqual([
        'ERR_FDPASS_EMFILE',
        'ERR_FDPASS_EMFILE',
      ])
      for (const channel of channels) await channel.destroy()
    } finally {
      child.process.kill('SIGKILL')
      await child.exited
    }
  })

  it('without an error listener, warns once per episode instead of staying silent', async () => {
    const address = uniqueAddress('emfile-warn')
    const child = spawnChild('emfile-server', [address, 'warn'], {}, { nofile: NOFILE })
    try {
      await child.next('ready')
      child.send('fill')
      await child.next('full')
      const pending = connect(address)
      pending.catch(() => {}) // awaited below; a failed run kills the child
      expect(await child.next('server-error')).toMatchObject({ name: 'FdpassWarning', code: 'ERR_FDPASS_EMFILE' })
      await new Promise((resolve) => setTimeout(resolve, 500))
      child.send('free')
      await (await pending).destroy()
      child.send('stats')
      expect(((await child.next('stats')) as unknown as { errors: string[] }).errors).toEqual(['ERR_FDPASS_EMFILE'])
    } finally {
      child.process.kill('SIGKILL')
      await child.exited
    }
  })
})

describe('a channel whose process runs out of fds while fds arrive', () => {
  for (const free of [0, 2]) {
    it(`fails with ERR_FDPASS_EMFILE on the side that ran out (${free} fds free for a 4-fd frame), closing what arrived`, async () => {
      const address = uniqueAddress(`emfile-recv-${free}`)
      const server = listen(address, { authorize: () => true })
      const accepted = new Promise<Channel>((resolve) => server.once('connection', resolve))
      const child = spawnChild('emfile-client', [address, String(free)], {}, { nofile: NOFILE })
      const segments = Array.from({ length: 4 }, () => Segment.create(4096))
      try {
        const channel = await accepted
        channel.send(u32(1), [segments[0]!.fd])
        await child.next('first')
        child.send('fill')
        await child.next('full')
        channel.send(u32(2), segments.map((segment) => segment.fd))
        const closed = await child.next('closed')
        expect(closed).toMatchObject({
          code: 'ERR_FDPASS_EMFILE',
          errorEvent: 'ERR_FDPASS_EMFILE',
          received: [1],
          leaked: 0,
        })
        expect(closed.message).toMatch(/ran out of file descriptors/)
        // The sender sees its peer go, not an error of its own.
        expect(await channel.closed).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
      } finally {
        for (const segment of segments) segment.close()
        child.process.kill('SIGKILL')
        await child.exited
        await server.close()
      }
    })
  }
})
