// Topologies that must stay apart: two domains of one uid; one domain name under two uids
// (the abstract hub name includes the uid); one domain name in directory mode and in abstract
// mode. Each group must see exactly its own nodes, elect its own hub, and never report a
// node of another group. Also: another uid squatting our hub name is refused with a clear error.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from '../src/index.ts'
import {
  agreed,
  type NodeConfig,
  type NodeProcess,
  packageDir,
  type Snapshot,
  spawnNode,
  stopAll,
  uniqueDomain,
  unixSocketsMatching,
} from './helpers.ts'

const NOBODY = 65534
const isRoot = process.getuid?.() === 0

afterAll(stopAll)

/** Joins every node of each group at once, waits until each group agrees, then checks that the groups never saw each other. */
async function checkApart(
  groups: { nodes: NodeProcess[]; join: NonNullable<NodeConfig['join']> }[],
  whileUp: () => void = () => {},
): Promise<void> {
  // All groups join concurrently: their elections race each other too.
  await Promise.all(
    groups.flatMap((group) =>
      group.nodes.map((node, i) => node.join({ join: group.join, endpoints: [{ topic: `t${i}`, role: 'publisher' }] })),
    ),
  )
  const everyone = new Set(groups.flatMap((group) => group.nodes.map((node) => node.id as string)))
  for (const group of groups) {
    const ids = group.nodes.map((node) => node.id as string)
    const endpoints = JSON.stringify(ids.map((id) => `${id}/1`).sort())
    const allEndpoints = (snapshot: Snapshot) => JSON.stringify(snapshot.nodes.flatMap((node) => node.endpoints).sort()) === endpoints
    const snapshots = await agreed(group.nodes, ids, allEndpoints)
    // Its own hub, and its own endpoints only.
    expect(ids).toContain(snapshots[0]?.hub?.id)
    for (const snapshot of snapshots) {
      expect(snapshot.nodes.flatMap((node) => node.endpoints).sort()).toEqual(ids.map((id) => `${id}/1`).sort())
    }
    // Not once did a node of another group show up in a change.
    const own = new Set(ids)
    for (const node of group.nodes) {
      const foreign = node.changes().filter(({ change }) => !own.has(change.node))
      expect(foreign, `${node.label} saw another group's nodes`).toEqual([])
      expect(node.changes().filter(({ change }) => change.type === 'node-up').length).toBe(ids.length)
    }
    expect(everyone.size).toBe(groups.reduce((sum, each) => sum + each.nodes.length, 0))
  }
  whileUp()
  await Promise.all(groups.flatMap((group) => group.nodes.map((node) => node.close())))
}

describe('isolation', () => {
  // Every test's processes start together up front: startup (tsx) is the slow part.
  let pool: Record<'a' | 'b' | 'root' | 'nobody' | 'dir' | 'abs', NodeProcess[]>
  beforeAll(async () => {
    const three = (label: string, options = {}) => [0, 1, 2].map((i) => spawnNode(`${label}${i}`, undefined, options))
    pool = {
      a: three('a'),
      b: three('b'),
      root: isRoot ? three('root') : [],
      nobody: isRoot ? three('nobody', { uid: NOBODY, gid: NOBODY }) : [],
      dir: three('dir'),
      abs: three('abs'),
    }
    await Promise.all(Object.values(pool).flatMap((nodes) => nodes.map((node) => node.ready)))
  })

  it('two domains of one uid never see each other', async () => {
    const a = uniqueDomain('iso-a')
    const b = uniqueDomain('iso-b')
    await checkApart([
      { nodes: pool.a, join: { domain: a } },
      { nodes: pool.b, join: { domain: b } },
    ])
    expect(unixSocketsMatching(a)).toEqual([])
    expect(unixSocketsMatching(b)).toEqual([])
  })

  // Spawning with another uid needs root (CI runs as root; the fixture, node_modules and
  // /usr/bin/node are world-readable, so the nobody child can load them).
  it.skipIf(!isRoot)('the same domain name under two uids forms two topologies', async () => {
    const domain = uniqueDomain('iso-uid')
    const groups = [
      { nodes: pool.root, join: { domain } },
      { nodes: pool.nobody, join: { domain } },
    ]
    // Each uid has its own hub name (@ipc-pubsub/1/<uid>/<domain>).
    await checkApart(groups, () => {
      const names = unixSocketsMatching(domain).map((line) => line.split(' ').at(-1))
      expect(names).toContain(`@ipc-pubsub/1/0/${domain}`)
      expect(names).toContain(`@ipc-pubsub/1/${NOBODY}/${domain}`)
    })
    expect(unixSocketsMatching(domain)).toEqual([])
  })

  // Abstract names have no permissions: another uid can bind ours. It must be refused, with a
  // clear error, and never be talked to.
  it.skipIf(!isRoot)('a hub address squatted by another uid fails join() with ERR_TOPOLOGY_UNTRUSTED_HUB', async () => {
    const domain = uniqueDomain('iso-squat')
    const address = `@ipc-pubsub/1/${process.getuid?.()}/${domain}`
    const script = `import { listen } from '@ipc-pubsub/fdpass'
      const server = listen(${JSON.stringify(address)}, { authorize: () => true })
      server.on('connection', () => process.send('connection'))
      process.send('listening')`
    const squatter = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: packageDir,
      uid: NOBODY,
      gid: NOBODY,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    const messages: unknown[] = []
    squatter.on('message', (message) => messages.push(message))
    try {
      await new Promise<void>((resolve, reject) => {
        squatter.once('message', () => resolve())
        squatter.once('exit', (code) => reject(new Error(`squatter exited with ${code}`)))
      })
      const error = await join({ domain, signal: AbortSignal.timeout(10_000) }).then(
        () => undefined,
        (reason: unknown) => reason,
      )
      expect(error).toMatchObject({ code: 'ERR_TOPOLOGY_UNTRUSTED_HUB' })
      // The squatter's server admits anyone; it never got a channel because we refused it first.
      expect(messages).toEqual(['listening'])
    } finally {
      squatter.kill('SIGKILL')
    }
  })

  it('a directory-mode domain and an abstract-mode domain of the same name stay apart', async () => {
    const directory = mkdtempSync(joinPath(tmpdir(), 'topo-iso-'))
    try {
      const domain = uniqueDomain('iso-dir')
      await checkApart([
        { nodes: pool.dir, join: { domain, directory } },
        { nodes: pool.abs, join: { domain } },
      ])
      expect(unixSocketsMatching(domain)).toEqual([])
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })
})
