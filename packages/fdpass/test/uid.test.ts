import { closeSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { type Channel, listen, type PeerCredentials } from '../src/index.ts'
import { fdCount, settleFdCount, spawnChild, uniqueAddress } from './helpers.ts'

const NOBODY = 65534
const isRoot = process.getuid?.() === 0

// Spawning with another uid needs root (CI runs as root; the fixture and node_modules are
// world-readable, so the child can load them).
describe.skipIf(!isRoot)('a client running as another uid', () => {
  it('is refused by the default authorize: its connect rejects with ERR_FDPASS_UNAUTHORIZED', async () => {
    const baseline = fdCount()
    const address = uniqueAddress('uid-refused')
    const server = listen(address)
    const refused: PeerCredentials[] = []
    server.on('refused', (peer: PeerCredentials) => refused.push(peer))
    let admitted = 0
    server.on('connection', () => admitted++)
    const child = spawnChild('uid-client', [address], { uid: NOBODY, gid: NOBODY })
    const result = await child.next('connect')
    expect(result).toMatchObject({ ok: false, code: 'ERR_FDPASS_UNAUTHORIZED', uid: NOBODY })
    expect(admitted).toBe(0)
    expect(refused).toHaveLength(1)
    expect(refused[0]).toMatchObject({ uid: NOBODY, gid: NOBODY, pid: child.process.pid })
    await child.exited
    await server.close()
    expect(await settleFdCount(baseline)).toBe(baseline)
  })

  it('is admitted by an authorize that allows it, and sees its peer credentials', async () => {
    const baseline = fdCount()
    const address = uniqueAddress('uid-admitted')
    const seen: PeerCredentials[] = []
    const server = listen(address, {
      authorize: (peer) => {
        seen.push(peer)
        return peer.uid === NOBODY
      },
    })
    server.on('connection', (channel: Channel) => {
      channel.on('message', ({ data, fds }) => {
        channel.send(data, fds)
        for (const fd of fds) closeSync(fd)
      })
    })
    const accepted = new Promise<Channel>((resolve) => server.once('connection', resolve))
    const child = spawnChild('uid-client', [address], { uid: NOBODY, gid: NOBODY })
    expect(await child.next('connect')).toMatchObject({ ok: true, uid: NOBODY, serverUid: 0 })
    const channel = await accepted
    expect(channel.peer).toEqual({ pid: child.process.pid, uid: NOBODY, gid: NOBODY })
    expect(seen).toEqual([channel.peer])
    // The memfd the nobody process created came through, and its echo went back.
    expect(await child.next('echo')).toMatchObject({ seq: 7 })
    await child.exited
    expect(await channel.closed).toMatchObject({ code: 'ERR_FDPASS_PEER_CLOSED' })
    await server.close()
    expect(await settleFdCount(baseline)).toBe(baseline)
  })
})
