import { openSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { Doorbell } from './doorbell.js'
import { dupFd, fdIsOpen } from './native.js'

describe('Doorbell', () => {
  it('calls back once per batch of rings, with the counter reset', async () => {
    using bell = Doorbell.create()
    let calls = 0
    const rung = new Promise<void>((resolve) => {
      bell.watch(() => {
        calls++
        resolve()
      })
    })
    bell.ring()
    bell.ring()
    await rung
    // Level-triggered poll: had the counter not been reset, the callback would repeat.
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(calls).toBe(1)
    expect(bell.drain()).toBe(false)
  })

  it('drain() tells whether it was rung', () => {
    using bell = Doorbell.create()
    expect(bell.drain()).toBe(false)
    bell.ring()
    expect(bell.drain()).toBe(true)
    expect(bell.drain()).toBe(false)
  })

  it('adopts a received eventfd, rung through another descriptor of the same file', async () => {
    using bell = Doorbell.create()
    const copy = dupFd(bell.fd)
    using adopted = Doorbell.fromFd(copy)
    const rung = new Promise<void>((resolve) => adopted.watch(resolve))
    bell.ring()
    await rung
  })

  it('refuses (and closes) a descriptor that is not a non-blocking eventfd', () => {
    const file = openSync('/dev/null', 'r')
    expect(() => Doorbell.fromFd(file)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_ARGUMENT' }))
    expect(fdIsOpen(file)).toBe(false)
    expect(() => Doorbell.fromFd(999_999)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_ARGUMENT' }))
  })

  it('close() is idempotent and ring() after close is a no-op', () => {
    const bell = Doorbell.create()
    const fd = bell.fd
    bell.close()
    bell.close()
    bell.ring()
    expect(fdIsOpen(fd)).toBe(false)
  })
})
