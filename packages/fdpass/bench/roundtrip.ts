// Measures, in one run and under the same placement:
//   1. median round trip of one frame + one memfd each way between two processes (fdpass),
//   2. median round trip of one 8-byte message over a node:net Unix stream socket (no fds),
//   3. one-way rate of frames with one memfd each (fdpass).
// Run: node --import tsx bench/roundtrip.ts   (pin with taskset to compare placements)
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, unlinkSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Segment } from '@ipc-pubsub/shm'
import { type Channel, connect, listen, type Message } from '../src/index.ts'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20_000)
const WARMUP = 2_000
const ONE_WAY = Number(process.env.BENCH_ONE_WAY ?? 200_000)

const [role, address] = process.argv.slice(2)

if (role === 'child') {
  // The peer process: an fdpass echo (fds echoed back, then closed), a node:net echo, and
  // a one-way sink that answers once it has counted ONE_WAY frames.
  const server = listen(`@${address}`)
  server.on('connection', (channel: Channel) => {
    let sinkCount = 0
    channel.on('message', ({ data, fds }: Message) => {
      if (data[0] === 2) {
        for (const fd of fds) closeSync(fd)
        if (++sinkCount === ONE_WAY) {
          sinkCount = 0
          channel.send(Uint8Array.of(3))
        }
        return
      }
      channel.send(data, fds)
      for (const fd of fds) closeSync(fd)
    })
  })
  const netPath = join(tmpdir(), `${address}.sock`)
  const net = createServer((socket) => socket.on('data', (chunk) => socket.write(chunk)))
  net.listen(netPath, () => process.send?.('ready'))
  process.on('disconnect', () => {
    net.close()
    void server.destroy()
  })
} else {
  const name = `ipc-pubsub-fdpass-bench-${process.pid}`
  const child = fork(new URL(import.meta.url).pathname, ['child', name], { execArgv: ['--import', 'tsx'] })
  await once(child, 'message')

  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b)
    return sorted[Math.floor(sorted.length / 2)]!
  }

  // 1. fdpass: one 8-byte frame + one memfd, echoed back with the fd.
  const channel = await connect(`@${name}`)
  const segment = Segment.create(4096)
  const frame = new Uint8Array(8).fill(1)
  const fdpassTimes: number[] = []
  {
    let resolveReply!: (m: Message) => void
    channel.on('message', (m: Message) => resolveReply(m))
    for (let i = 0; i < WARMUP + ROUNDS; i++) {
      const reply = new Promise<Message>((resolve) => (resolveReply = resolve))
      const t0 = process.hrtime.bigint()
      channel.send(frame, [segment.fd])
      const m = await reply
      const t1 = process.hrtime.bigint()
      closeSync(m.fds[0]!)
      if (i >= WARMUP) fdpassTimes.push(Number(t1 - t0) / 1000)
    }
    channel.removeAllListeners('message')
  }

  // 2. node:net: one 8-byte message, echoed back.
  const netTimes: number[] = []
  {
    const socket = createConnection(join(tmpdir(), `${name}.sock`))
    await once(socket, 'connect')
    socket.setNoDelay?.(true)
    const payload = Buffer.alloc(8, 1)
    let resolveReply!: () => void
    let pending = 0
    socket.on('data', (chunk: Buffer) => {
      pending -= chunk.length
      if (pending <= 0) resolveReply()
    })
    for (let i = 0; i < WARMUP + ROUNDS; i++) {
      const reply = new Promise<void>((resolve) => (resolveReply = resolve))
      pending = 8
      const t0 = process.hrtime.bigint()
      socket.write(payload)
      await reply
      const t1 = process.hrtime.bigint()
      if (i >= WARMUP) netTimes.push(Number(t1 - t0) / 1000)
    }
    socket.destroy()
  }

  // 3. fdpass one way: ONE_WAY frames with one memfd each, with back-pressure.
  let rate: number
  {
    const done = once(channel, 'message')
    const oneWay = Uint8Array.of(2)
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < ONE_WAY; i++) {
      if (!channel.send(oneWay, [segment.fd])) await once(channel, 'drain')
    }
    await done
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    rate = ONE_WAY / seconds
  }

  await channel.close()
  segment.close()
  child.disconnect()
  await once(child, 'exit')
  try {
    unlinkSync(join(tmpdir(), `${name}.sock`))
  } catch {}

  const fdpassMedian = median(fdpassTimes)
  const netMedian = median(netTimes)
  const result = {
    rounds: ROUNDS,
    fdpassRoundTripMedianUs: Number(fdpassMedian.toFixed(1)),
    netRoundTripMedianUs: Number(netMedian.toFixed(1)),
    ratio: Number((fdpassMedian / netMedian).toFixed(2)),
    oneWayFramesPerSecond: Math.round(rate),
  }
  console.log(JSON.stringify(result, null, 2))
}
