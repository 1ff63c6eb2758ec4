// Micro-costs behind the big numbers, measured in the micro worker (pinned like a publisher)
// with an echo peer process (pinned like a subscriber). Each figure is the median of several
// timed batches after a warm-up batch.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, openSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { constants, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks'
import { type Channel, connect, listen, type Message } from '@ipc-pubsub/fdpass'
import { Segment } from '@ipc-pubsub/shm'
import type { Job, MicroResults } from './job.js'
import { getpid } from './native.js'
import { median } from './stats.js'

const PAGE = 4096
const MiB = 1 << 20
const BATCHES = 7

/**
 * Times BATCHES batches of `run(n)` after one untimed batch; per operation, in ns: the median
 * batch, and the mean over every timed operation (which keeps the rare expensive ones, such
 * as a garbage collection, that a median leaves out).
 */
function perOp(n: number, run: (n: number) => void): { median: number; mean: number } {
  run(Math.max(1, n >> 2))
  const times: number[] = []
  for (let b = 0; b < BATCHES; b++) {
    const t0 = process.hrtime.bigint()
    run(n)
    times.push(Number(process.hrtime.bigint() - t0) / n)
  }
  return { median: median(times), mean: times.reduce((a, b) => a + b, 0) / times.length }
}

const netPath = (job: Job): string => `\0${job.rendezvous}-micro`

/** The echo peer: answers fdpass frames (fds included) and node:net bytes. */
export async function runEcho(job: Job): Promise<void> {
  const server = listen(`@${job.rendezvous}`)
  server.on('connection', (channel: Channel) => {
    channel.on('message', ({ data, fds }: Message) => {
      channel.send(data, fds)
      for (const fd of fds) closeSync(fd)
    })
  })
  const net = createServer((socket) => socket.on('data', (chunk) => socket.write(chunk)))
  net.listen(netPath(job))
  await once(net, 'listening')
  process.send?.('ready')
  // Its parent is done with it: close up and end (worker.ts parks it on a promise that never
  // settles, so it must exit on its own).
  process.on('disconnect', () => {
    net.close()
    void Promise.resolve(server.destroy()).finally(() => process.exit(0))
  })
}

async function roundTrips(job: Job, rounds: number, warmup: number): Promise<Pick<MicroResults, 'fdRoundTripUs' | 'frameRoundTripUs' | 'netRoundTripUs'>> {
  const worker = process.argv[1] as string
  const echo = fork(worker, [JSON.stringify({ ...job, id: job.id.replace(/micro$/, 'echo'), role: 'echo' })], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  try {
    const [first] = await Promise.race([once(echo, 'message'), once(echo, 'exit').then(() => ['exit'])])
    if (first !== 'ready') throw new Error('the echo process exited before it was ready')
    const channel = await connect(`@${job.rendezvous}`)
    const segment = Segment.create(PAGE)
    const frame = new Uint8Array(64).fill(1)
    let resolve!: (m: Message) => void
    channel.on('message', (m: Message) => resolve(m))
    const roundTrip = async (fds: number[]): Promise<number> => {
      const reply = new Promise<Message>((r) => {
        resolve = r
      })
      const t0 = process.hrtime.bigint()
      channel.send(frame, fds)
      const m = await reply
      const t1 = process.hrtime.bigint()
      for (const fd of m.fds) closeSync(fd)
      if (m.fds.length !== fds.length) throw new Error(`echo returned ${m.fds.length} fds, not ${fds.length}`)
      return Number(t1 - t0) / 1000
    }
    // With and without the fd alternate (and swap order each round), so drift hits both alike.
    const withFd: number[] = []
    const withoutFd: number[] = []
    for (let i = 0; i < warmup + rounds; i++) {
      const first = i % 2 === 0
      const a = await roundTrip(first ? [segment.fd] : [])
      const b = await roundTrip(first ? [] : [segment.fd])
      if (i < warmup) continue
      withFd.push(first ? a : b)
      withoutFd.push(first ? b : a)
    }
    const fdRoundTripUs = median(withFd)
    const frameRoundTripUs = median(withoutFd)
    await channel.close()
    segment.close()

    const socket = createConnection(netPath(job))
    await once(socket, 'connect')
    const payload = Buffer.alloc(64, 1)
    let pending = 0
    let done!: () => void
    socket.on('data', (chunk: Buffer) => {
      pending -= chunk.length
      if (pending <= 0) done()
    })
    const netTimes: number[] = []
    for (let i = 0; i < warmup + rounds; i++) {
      const reply = new Promise<void>((r) => {
        done = r
      })
      pending = payload.length
      const t0 = process.hrtime.bigint()
      socket.write(payload)
      await reply
      const t1 = process.hrtime.bigint()
      if (i >= warmup) netTimes.push(Number(t1 - t0) / 1000)
    }
    socket.destroy()
    return { fdRoundTripUs, frameRoundTripUs, netRoundTripUs: median(netTimes) }
  } finally {
    echo.disconnect()
    if (echo.exitCode === null && echo.signalCode === null) await once(echo, 'exit')
  }
}

/** Counts major (mark-compact) garbage collections from now until stop(). */
async function majorGcs(): Promise<{ stop(): Promise<number> }> {
  let count = 0
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) count++
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  return {
    async stop() {
      // GC entries are delivered asynchronously: let the pending ones arrive first.
      await new Promise((resolve) => setTimeout(resolve, 10))
      observer.disconnect()
      return count
    },
  }
}

function touch(bytes: Uint8Array, write: boolean): number {
  let sum = 0
  for (let p = 0; p < bytes.length; p += PAGE) {
    if (write) bytes[p] = 1
    else sum += bytes[p] as number
  }
  return sum
}

/** Runs every micro-cost; `quick` takes fewer samples. */
export async function runMicro(job: Job): Promise<MicroResults> {
  const quick = job.quick
  const koffiCallNs = perOp(quick ? 20_000 : 200_000, (n) => {
    for (let i = 0; i < n; i++) getpid()
  }).median

  // A mean, with the major GCs counted alongside: a mapped view is external memory to V8, and
  // enough of it makes V8 collect. That is part of what a big segment costs, and it comes in
  // bursts a median would hide.
  const segmentCycleUs: MicroResults['segmentCycleUs'] = []
  for (const size of [64, 4 * 1024, 64 * 1024, MiB, 4 * MiB, 8 * MiB, 16 * MiB]) {
    const n = quick ? 20 : 100
    const counter = await majorGcs()
    const { mean: ns } = perOp(n, (k) => {
      for (let i = 0; i < k; i++) {
        const segment = Segment.create(size)
        segment.bytes
        segment.close()
      }
    })
    // perOp runs n/4 untimed, then BATCHES x n timed.
    const ops = Math.max(1, n >> 2) + BATCHES * n
    segmentCycleUs.push({ size, us: ns / 1000, majorGcsPerOp: (await counter.stop()) / ops })
  }

  // First touch: a fresh 16 MiB segment, one byte written per page; then the same again
  // (pages present); then a second, read-only mapping of it read one byte per page, as a
  // subscriber maps what a publisher wrote.
  const SIZE = 16 * MiB
  const write1: number[] = []
  const write2: number[] = []
  const read1: number[] = []
  for (let r = 0; r < (quick ? 3 : BATCHES); r++) {
    const segment = Segment.create(SIZE)
    const bytes = segment.bytes
    let t0 = process.hrtime.bigint()
    touch(bytes, true)
    write1.push(Number(process.hrtime.bigint() - t0) / 1000 / 16)
    t0 = process.hrtime.bigint()
    touch(bytes, true)
    write2.push(Number(process.hrtime.bigint() - t0) / 1000 / 16)
    const reader = Segment.fromFd(openSync(`/proc/self/fd/${segment.fd}`, 'r'), { readonly: true })
    t0 = process.hrtime.bigint()
    touch(reader.bytes, false)
    read1.push(Number(process.hrtime.bigint() - t0) / 1000 / 16)
    reader.close()
    segment.close()
  }

  const trips = await roundTrips(job, quick ? 500 : 5000, quick ? 100 : 500)
  return {
    koffiCallNs,
    segmentCycleUs,
    firstTouchWriteUsPerMiB: median(write1),
    secondTouchWriteUsPerMiB: median(write2),
    firstTouchReadUsPerMiB: median(read1),
    ...trips,
  }
}
