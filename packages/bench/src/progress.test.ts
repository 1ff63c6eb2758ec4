import { describe, expect, it } from 'vitest'
import { Progress, type ProgressStream } from './progress.js'

function fakeStream(isTTY: boolean): ProgressStream & { writes: string[] } {
  const writes: string[] = []
  return {
    isTTY,
    writes,
    write(text: string) {
      writes.push(text)
      return true
    },
  }
}

const CLEAR = '\r\x1b[K'

describe('Progress on a plain stream (not a terminal)', () => {
  it('prints one plain line per finished step, with [i/total]', () => {
    const stream = fakeStream(false)
    const progress = new Progress(3, stream)
    progress.start('latency 64 B node:net')
    progress.finish('latency 64 B node:net', 'p50 10 µs')
    progress.start('latency 64 B zeromq')
    progress.finish('latency 64 B zeromq', 'FAILED: boom')
    progress.end()
    expect(stream.writes).toEqual(['[1/3] latency 64 B node:net: p50 10 µs\n', '[2/3] latency 64 B zeromq: FAILED: boom\n'])
  })

  it('writes nothing when a step starts, and no escape codes at all', () => {
    const stream = fakeStream(false)
    const progress = new Progress(2, stream)
    progress.start('a')
    expect(stream.writes).toEqual([])
    progress.finish('a', 'ok')
    progress.note('section')
    progress.end()
    expect(stream.writes.join('')).not.toContain('\x1b')
    expect(stream.writes.join('')).not.toContain('\r')
  })

  it('pads the step number to the width of the total', () => {
    const stream = fakeStream(false)
    const progress = new Progress(12, stream)
    for (let i = 1; i <= 12; i++) progress.finish(`step ${i}`, 'ok')
    expect(stream.writes[0]).toBe('[ 1/12] step 1: ok\n')
    expect(stream.writes[9]).toBe('[10/12] step 10: ok\n')
    expect(stream.writes[11]).toBe('[12/12] step 12: ok\n')
  })

  it('treats a stream without isTTY as plain', () => {
    const writes: string[] = []
    const progress = new Progress(1, { write: (text: string) => writes.push(text) })
    progress.start('x')
    progress.finish('x', 'done')
    expect(writes).toEqual(['[1/1] x: done\n'])
  })

  it('prints notes as lines of their own', () => {
    const stream = fakeStream(false)
    const progress = new Progress(1, stream)
    progress.note('## micro-costs')
    expect(stream.writes).toEqual(['## micro-costs\n'])
  })
})

describe('Progress on a terminal', () => {
  it('rewrites one line in place: start shows the step running, finish its outcome', () => {
    const stream = fakeStream(true)
    const progress = new Progress(2, stream)
    progress.start('throughput 4 KiB node:net')
    progress.finish('throughput 4 KiB node:net', '200 MB/s')
    progress.start('throughput 4 KiB zeromq')
    expect(stream.writes).toEqual([`${CLEAR}[1/2] throughput 4 KiB node:net …`, `${CLEAR}[1/2] throughput 4 KiB node:net: 200 MB/s`, `${CLEAR}[2/2] throughput 4 KiB zeromq …`])
    for (const text of stream.writes) expect(text).not.toContain('\n')
  })

  it('end() clears the line once', () => {
    const stream = fakeStream(true)
    const progress = new Progress(1, stream)
    progress.start('a')
    progress.finish('a', 'ok')
    stream.writes.length = 0
    progress.end()
    expect(stream.writes).toEqual([CLEAR])
    progress.end()
    expect(stream.writes).toEqual([CLEAR])
  })

  it('end() writes nothing when nothing was shown', () => {
    const stream = fakeStream(true)
    new Progress(1, stream).end()
    expect(stream.writes).toEqual([])
  })

  it('a note clears the in-place line first, then stays', () => {
    const stream = fakeStream(true)
    const progress = new Progress(2, stream)
    progress.start('a')
    progress.note('warning: something')
    progress.note('another')
    expect(stream.writes).toEqual([`${CLEAR}[1/2] a …`, CLEAR, 'warning: something\n', 'another\n'])
  })
})
