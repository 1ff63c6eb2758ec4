// A busy or stopped hub (issue 12, item 2). The hub runs in a worker thread of the process
// that won the election, so a long synchronous loop in that process's main thread does not
// delay anyone's join. A hub whose whole process is stopped (kill -STOP, a debugger) cannot
// answer: a new join() then fails after its `timeout` with ERR_TOPOLOGY_TIMEOUT naming the
// hub's pid, instead of hanging; nodes already joined just wait, and once the hub runs
// again, joins succeed. And a hub holder whose main thread ends (process.exit(), an uncaught
// error) exits as it would without a hub thread: Node tears the hub thread down first, and
// koffi aborts the process if a socket of that thread sees an event then, so the client stops
// its hub thread synchronously on 'exit'.
import { afterAll, describe, expect, it } from 'vitest'
import { agreed, ms, spawnNode, stopAll, type TryJoinResult, uniqueDomain } from './helpers.ts'

/** The main-thread loop the issue describes. */
const BUSY_MS = 5000
/**
 * The issue wants a join to take ~100 ms on this machine while the hub holder is busy; the
 * bound here is generous (a loaded CI machine), far below the 5 s a join waited before.
 */
const BUSY_JOIN_BOUND_MS = 1500
const TIMEOUT_MS = 1000
/** How late a timed-out join() may reject on a loaded machine. */
const TIMEOUT_SLACK_MS = 1000

afterAll(stopAll)

describe('a busy or stopped hub', () => {
  it(`a ${BUSY_MS / 1000} s synchronous loop in the hub holder's main thread does not delay another process's join`, async () => {
    const domain = uniqueDomain('busy')
    const holder = spawnNode('holder', { join: { domain } })
    const joiner = spawnNode('joiner')
    await Promise.all([holder.ready, joiner.ready])
    expect((await holder.joined()).snapshot.isHub).toBe(true)

    const busy = await holder.request<{ t: string }>('busy', { ms: BUSY_MS })
    const result = await joiner.request<TryJoinResult>('try-join', { options: { domain, timeout: BUSY_MS - 1000 } })
    // (busy-done is not a LogEntry the other tests know: it is matched by its type string.)
    const isDone = (entry: { type: string }) => entry.type === 'busy-done'
    await holder.waitFor(() => holder.log.some(isDone), 'the end of the busy loop', BUSY_MS + 10_000)
    const done = holder.log.find(isDone)?.t as bigint

    expect(result, JSON.stringify(result)).toMatchObject({ ok: true, isHub: false })
    // The join completed while the holder's main thread was still in its loop.
    expect(BigInt(result.t)).toBeGreaterThan(BigInt(busy.t))
    expect(BigInt(result.t)).toBeLessThan(done)
    console.log(
      `join while the hub holder's main thread is busy: ${result.ms.toFixed(1)} ms (the loop ran ${ms(done - BigInt(busy.t)).toFixed(0)} ms)`,
    )
    expect(result.ms).toBeLessThan(BUSY_JOIN_BOUND_MS)
    // The holder's own client catches up once its thread is free.
    await agreed([holder, joiner], [holder.id as string, result.id as string])
  })

  it('join() rejects with ERR_TOPOLOGY_TIMEOUT naming a stopped hub, nodes already joined wait, and joins succeed once it runs again', async () => {
    const domain = uniqueDomain('stopped')
    const holder = spawnNode('holder', { join: { domain } })
    const member = spawnNode('member')
    const joiner = spawnNode('joiner')
    await Promise.all([holder.ready, member.ready, joiner.ready])
    expect((await holder.joined()).snapshot.isHub).toBe(true)
    const memberJoin = await member.join({ join: { domain } })

    process.kill(holder.pid, 'SIGSTOP')
    let result: TryJoinResult
    try {
      result = await joiner.request<TryJoinResult>('try-join', { options: { domain, timeout: TIMEOUT_MS } })
      // A node that was joined before is not affected: it still has its hub and state.
      const snapshot = await member.snapshot()
      expect(snapshot.hub?.id).toBe(holder.id)
      expect(snapshot.nodes.map((node) => node.id).sort()).toEqual([holder.id, memberJoin.id].sort())
    } finally {
      process.kill(holder.pid, 'SIGCONT')
    }
    expect(result, JSON.stringify(result)).toMatchObject({ ok: false, code: 'ERR_TOPOLOGY_TIMEOUT', hubPid: holder.pid })
    expect(result.message).toContain(`pid ${holder.pid}`)
    expect(result.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 1)
    expect(result.ms).toBeLessThan(TIMEOUT_MS + TIMEOUT_SLACK_MS)
    console.log(`join() against a stopped hub rejected after ${result.ms.toFixed(1)} ms (timeout ${TIMEOUT_MS} ms)`)

    const again = await joiner.request<TryJoinResult>('try-join', { options: { domain } })
    expect(again, JSON.stringify(again)).toMatchObject({ ok: true, isHub: false })
    await agreed([holder, member, joiner], [holder.id as string, memberJoin.id, again.id as string])
  })

  it.each(['exit', 'throw'] as const)(
    "a hub holder whose main thread ends by %s while others keep joining exits with its code, not an abort",
    async (how) => {
      // Before the synchronous stop on 'exit', most rounds ended in SIGABRT.
      for (let round = 0; round < 3; round++) {
        const domain = uniqueDomain(`exit-${how}`)
        const holder = spawnNode('holder', { join: { domain } })
        const churner = spawnNode('churner')
        await Promise.all([holder.ready, churner.ready])
        expect((await holder.joined()).snapshot.isHub).toBe(true)
        // Joins and leaves keep the hub thread's sockets busy until the end.
        void churner.request('churn', { count: 1_000_000, options: { domain } }, 120_000).catch(() => {})
        await holder.waitFor(() => holder.changes().length >= 20, 'some churn at the hub')
        if (how === 'exit') void holder.exit().catch(() => {})
        else void holder.request('throw').catch(() => {})
        const exit = await holder.exited
        expect(holder.stderr).not.toContain('FATAL')
        expect(exit).toEqual({ code: how === 'exit' ? 0 : 1, signal: null })
        await churner.stop()
      }
    },
  )
})
