import { describe, expect, it } from 'vitest'
import { type FdpassError, listen, type Server } from '../src/index.ts'
import { spawnChild, uniqueAddress } from './helpers.ts'

describe('two processes racing to listen on one abstract name', () => {
  it('exactly one wins, the other gets ERR_FDPASS_EADDRINUSE; the name is free once the winner is killed', async () => {
    for (let round = 0; round < 3; round++) {
      const address = uniqueAddress('race')
      const children = [spawnChild('race-listen', [address]), spawnChild('race-listen', [address])]
      await Promise.all(children.map((child) => child.next('ready')))
      for (const child of children) child.send('go')
      const results = await Promise.all(children.map((child) => child.next('listen')))
      const winners = results.filter((r) => r.ok === true)
      const losers = results.filter((r) => r.ok !== true)
      expect(winners).toHaveLength(1)
      expect(losers).toEqual([expect.objectContaining({ code: 'ERR_FDPASS_EADDRINUSE' })])
      // While the winner lives, this process cannot take the name either.
      expect(() => listen(address)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_EADDRINUSE', errno: -98 }))
      const winner = children[results.indexOf(winners[0]!)]!
      winner.process.kill('SIGKILL')
      await Promise.all(children.map((child) => child.exited))
      // The kernel releases the name as the dead process's files close; a few retries cover
      // the last microseconds of its exit on a loaded machine.
      let server: Server | undefined
      let lastError: FdpassError | undefined
      for (let attempt = 0; attempt < 50 && server === undefined; attempt++) {
        try {
          server = listen(address)
        } catch (error) {
          lastError = error as FdpassError
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      }
      expect(server, String(lastError)).toBeDefined()
      await server!.close()
    }
  })
})
