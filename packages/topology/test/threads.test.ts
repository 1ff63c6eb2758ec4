// Nodes in worker threads (issue 12, item 3). A worker thread can join and hold the hub; when
// it ends, however it ends (an uncaught throw, process.exit() in it, terminate() from its
// parent), everything it opened closes with it: the hub name is free again, the nodes left
// (the main thread of the same process too) elect a new hub, new processes can join, and the
// process is back at its fd baseline. Before, the thread's sockets (opened through koffi, so
// not owned by its Node environment) stayed open: the name stayed bound and nobody answered.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { agreed, spawnNode, stopAll, type TryJoinResult, uniqueDomain, unixSocketsMatching } from './helpers.ts'

type How = 'throw' | 'exit' | 'terminate'

/** The thread's node is alive as a process (its pid is the host's): the new hub waits this long for it. */
const GRACE_MS = 200

const directory = mkdtempSync(joinPath(tmpdir(), 'topo-threads-'))

afterAll(async () => {
  await stopAll()
  rmSync(directory, { recursive: true, force: true })
})

interface ThreadJoin {
  id: string
  isHub: boolean
}

async function threadHoldsHubThenEnds(how: How, mode: 'abstract' | 'directory', withOther: boolean): Promise<void> {
  const domain = uniqueDomain(`thread-${how}`)
  const options = { domain, reconnectGrace: GRACE_MS, ...(mode === 'directory' ? { directory } : {}) }
  const host = spawnNode('host')
  const other = withOther ? spawnNode('other') : undefined
  const late = spawnNode('late')
  await Promise.all([host.ready, other?.ready, late.ready])

  // A worker thread of `host` joins first: it holds the hub (its hub thread is its own worker).
  const inThread = await host.request<ThreadJoin>('thread-join', { options })
  expect(inThread.isHub).toBe(true)
  // The main thread of the same process joins too, and maybe another process.
  const main = await host.join({ join: options })
  const otherJoin = await other?.join({ join: options })
  const alive = [host, ...(other ? [other] : [])]
  const ids = [main.id, ...(otherJoin ? [otherJoin.id] : [])]
  await agreed(alive, [inThread.id, ...ids], (snapshot) => snapshot.hub?.id === inThread.id)

  const ended = await host.request<{ code: number }>('thread-end', { how })
  expect(ended.code).toBe(how === 'exit' ? 3 : 1)

  // The nodes left elect a new hub among themselves and see the thread's node go.
  const snapshots = await agreed(alive, ids)
  expect(ids).toContain(snapshots[0]?.hub?.id)
  // A new process joins (before: it hung on the dead thread's socket).
  const lateJoin = await late.request<TryJoinResult>('try-join', { options: { ...options, timeout: 5000 } })
  expect(lateJoin, JSON.stringify(lateJoin)).toMatchObject({ ok: true, isHub: false })
  await agreed([...alive, late], [...ids, lateJoin.id as string])

  // Nothing the thread opened is left: once the main thread's client is closed too, the host
  // is back at its fd baseline.
  await host.close()
  const counts = await host.counts()
  expect({ fds: counts.fds, sockets: counts.sockets }, 'host fds after the thread ended and the client closed').toEqual(
    counts.baseline,
  )
  await Promise.all([other?.close(), late.close()])
  expect(unixSocketsMatching(domain)).toEqual([])
  await Promise.all([host.stop(), other?.stop(), late.stop()])
}

describe('a node in a worker thread that holds the hub', () => {
  it.each<How>(['throw', 'exit', 'terminate'])(
    'ends by %s: the others (its own main thread too) elect a new hub, new processes join, no fd is left',
    async (how) => {
      await threadHoldsHubThenEnds(how, 'abstract', true)
    },
  )

  it('is terminate()d in directory mode with only its own main thread left: that thread becomes the hub', async () => {
    await threadHoldsHubThenEnds('terminate', 'directory', false)
  })
})
