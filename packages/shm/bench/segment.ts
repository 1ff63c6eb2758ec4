// Micro-costs of @ipc-pubsub/shm, printed as medians of repeated runs in one process.
// Run: pnpm --filter @ipc-pubsub/shm bench
import { Segment } from '../src/index.js'

const sizes = [4096, 64 * 1024, 1 << 20, 16 << 20]
const rounds = 7

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[sorted.length >> 1]!
}

/** Median over `rounds` of the mean µs per call of `fn` over `n` calls. */
function measure(n: number, fn: () => void): number {
  const samples: number[] = []
  for (let round = 0; round < rounds + 1; round++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) fn()
    const micros = Number(process.hrtime.bigint() - start) / 1000 / n
    if (round > 0) samples.push(micros) // round 0 warms up
  }
  return median(samples)
}

const label = (size: number) => (size >= 1 << 20 ? `${size >> 20} MiB` : `${size >> 10} KiB`)
const rows: string[][] = []
for (const size of sizes) {
  const n = size >= 1 << 20 ? 50 : 2000
  const createClose = measure(n, () => Segment.create(size).close())
  const firstTouch = measure(n, () => {
    const segment = Segment.create(size)
    const bytes = segment.bytes
    for (let i = 0; i < size; i += 4096) bytes[i] = 1
    segment.close()
  })
  const prefaulted = measure(n, () => {
    const segment = Segment.create(size, { prefault: true })
    const bytes = segment.bytes
    for (let i = 0; i < size; i += 4096) bytes[i] = 1
    segment.close()
  })
  const reuse = Segment.create(size)
  const rewrite = measure(n, () => {
    const bytes = reuse.bytes
    for (let i = 0; i < size; i += 4096) bytes[i] = 1
  })
  reuse.close()
  rows.push([
    label(size),
    createClose.toFixed(1),
    firstTouch.toFixed(1),
    prefaulted.toFixed(1),
    rewrite.toFixed(1),
    (((firstTouch - createClose) / size) * (1 << 20)).toFixed(0),
  ])
}

const segment = Segment.create(4096)
const bytesAccess = measure(1_000_000, () => segment.bytes)
segment.close()

console.log(`@ipc-pubsub/shm micro-costs, Node ${process.version}, median of ${rounds} runs (µs per operation)\n`)
console.log('| size | create+map+close | + touch every page | prefault + touch | touch mapped pages again | first touch µs/MiB |')
console.log('|---|---|---|---|---|---|')
for (const row of rows) console.log(`| ${row.join(' | ')} |`)
console.log(`\n\`segment.bytes\` access: ${(bytesAccess * 1000).toFixed(0)} ns (one view per mapping, no koffi call)`)
