// Two processes share one segment: the parent writes, the child reads it through the passed
// fd and answers in the same memory, and both count on one shared counter with Atomics.
// Run: node packages/shm/examples/demo.js (after `pnpm build`).
import { spawn } from 'node:child_process'
import { Segment } from '@ipc-pubsub/shm'

const ROUNDS = 200_000
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Reads a NUL-terminated string at `offset`. */
function readString(bytes, offset) {
  const end = bytes.indexOf(0, offset)
  return decoder.decode(bytes.subarray(offset, end))
}

if (process.argv[2] === 'child') {
  // fd 3 is the segment the parent passed; its size comes from fstat, not from the parent.
  const segment = Segment.fromFd(3)
  const counter = segment.int32Array(0, 2)
  console.log(`[child ${process.pid}] mapped ${segment.size} bytes, reads: "${readString(segment.bytes, 64)}"`)
  segment.bytes.set(encoder.encode(`hello back from pid ${process.pid}\0`), 1024)
  Atomics.store(counter, 1, 1) // tell the parent the answer is there
  for (let i = 0; i < ROUNDS; i++) Atomics.add(counter, 0, 1)
  console.log(`[child ${process.pid}] added ${ROUNDS} to the shared counter`)
  segment.close()
} else {
  const segment = Segment.create(64 * 1024, { name: 'demo' })
  segment.bytes.set(encoder.encode(`hello from pid ${process.pid}\0`), 64)
  const counter = segment.int32Array(0, 2)
  console.log(`[parent ${process.pid}] created a ${segment.size}-byte memfd segment (fd ${segment.fd}), wrote a greeting`)

  const child = spawn(process.execPath, [new URL(import.meta.url).pathname, 'child'], {
    stdio: ['ignore', 'inherit', 'inherit', segment.fd],
  })
  while (Atomics.load(counter, 1) === 0) await new Promise((resolve) => setTimeout(resolve, 1))
  console.log(`[parent ${process.pid}] reads the child's answer in the same memory: "${readString(segment.bytes, 1024)}"`)
  for (let i = 0; i < ROUNDS; i++) Atomics.add(counter, 0, 1)
  const code = await new Promise((resolve) => child.on('close', resolve))
  const total = Atomics.load(counter, 0)
  console.log(`[parent ${process.pid}] shared counter = ${total} (expected ${2 * ROUNDS}): ${total === 2 * ROUNDS ? 'ok' : 'MISMATCH'}`)
  segment.close()
  if (code !== 0 || total !== 2 * ROUNDS) process.exitCode = 1
}
