import { openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { Segment } from '../src/index.js'
import { nextMessage, startWorker } from './helpers.js'

// Issue 12 item 3: fds opened through koffi belong to the process, not to the worker thread
// that opened them. A segment's fd is closed when its thread ends, however it ends.

function segmentFds(): string[] {
  const found: string[] = []
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`)
      if (target.includes('shm-thread-test')) found.push(`${fd} ${target}`)
    } catch {}
  }
  return found
}

function mappedSegments(): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes('shm-thread-test')).length
}

/** A new fd of a fresh memfd, for the worker to take over with Segment.fromFd. */
function handOver(): number {
  const segment = Segment.create(4096, { name: 'shm-thread-test' })
  const fd = openSync(`/proc/self/fd/${segment.fd}`, 'r+')
  segment.close()
  return fd
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  // Generous: this only bounds a hang, it is not a timing requirement.
  const deadline = Date.now() + 10_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within 10 s`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('a worker thread that ends closes the fds of its segments', () => {
  for (const mode of ['terminate', 'throw', 'exit', 'return'] as const) {
    it(`when it ${mode === 'terminate' ? 'is terminate()d' : mode === 'throw' ? 'throws an uncaught error' : mode === 'exit' ? 'calls process.exit()' : 'ends without closing them'}`, async () => {
      const shmName = `ipc-pubsub-shm-thread-${process.pid}-${mode}`
      const handed = handOver()
      const worker = startWorker('thread', { mode, shmName, received: handed })
      const errors: Error[] = []
      worker.on('error', (error) => errors.push(error))
      const exited = new Promise<number>((resolve) => worker.once('exit', resolve))
      const { fds } = await nextMessage<{ fds: number[] }>(worker)
      // The handed-over fd is the worker's now (it is closed with the worker, below).
      expect(fds).toContain(handed)
      if (mode === 'terminate') await worker.terminate()
      const code = await exited
      expect(code).toBe(mode === 'exit' ? 3 : mode === 'return' ? 0 : 1)
      if (mode === 'throw') expect(errors).toMatchObject([{ message: 'the worker crashes' }])
      await waitFor(() => segmentFds().length === 0, 'the close of every segment fd of the worker')
      expect(Segment.unlinkNamed(shmName)).toBe(true)
      // The main thread carries on.
      const mine = Segment.create(4096)
      mine.bytes[0] = 7
      expect(mine.bytes[0]).toBe(7)
      mine.close()
    })
  }

  it('mappings a dead worker left stay mapped (safe, not released) until the process exits', async () => {
    // Documented behaviour, not a wish: munmap needs two arguments, so it cannot run as a
    // cleanup hook, and no JS runs in a terminated thread. The memory stays reserved and
    // readable by nobody; it is not reused for another mapping.
    const before = mappedSegments()
    const shmName = `ipc-pubsub-shm-thread-${process.pid}-maps`
    const worker = startWorker('thread', { mode: 'terminate', shmName, received: handOver() })
    await nextMessage(worker)
    const during = mappedSegments()
    expect(during).toBeGreaterThan(before)
    await worker.terminate()
    Segment.unlinkNamed(shmName)
    await waitFor(() => segmentFds().length === 0, 'the close of every segment fd of the worker')
    expect(mappedSegments()).toBe(during)
  })
})
