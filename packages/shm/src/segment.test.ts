import { closeSync, fstatSync, ftruncateSync, openSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { MAX_SEGMENT_SIZE, Segment, ShmError } from './index.js'

/** Runs `fn` and returns the ShmError it throws (failing the test if it does not). */
function thrown(fn: () => unknown): ShmError {
  try {
    fn()
  } catch (error) {
    expect(ShmError.isInstance(error)).toBe(true)
    return error as ShmError
  }
  throw new Error('expected a ShmError, nothing was thrown')
}

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd)
    return true
  } catch {
    return false
  }
}

/** A second descriptor of the same memfd, as a receiving process would hold it. */
function reopen(segment: Segment, flags: 'r' | 'r+' = 'r+'): number {
  return openSync(`/proc/self/fd/${segment.fd}`, flags)
}

const fdCount = () => readdirSync('/proc/self/fd').length

const names: string[] = []
function sharedName(tag: string): string {
  const name = `ipc-pubsub-unit-${process.pid}-${tag}-${names.length}`
  names.push(name)
  return name
}
afterEach(() => {
  for (const name of names.splice(0)) Segment.unlinkNamed(name)
})

describe('Segment.create', () => {
  it('maps zeroed memory of the asked size, one view for the whole mapping', () => {
    using segment = Segment.create(10_000, { name: 'unit' })
    expect(segment.size).toBe(10_000)
    expect(segment.bytes.length).toBe(10_000)
    expect(segment.bytes.every((byte) => byte === 0)).toBe(true)
    expect(segment.bytes).toBe(segment.bytes)
    expect(segment.buffer).toBe(segment.bytes.buffer)
    expect(segment.name).toBe('unit')
    expect(segment.readonly).toBe(false)
    expect(fstatSync(segment.fd).size).toBe(10_000)
  })

  it('prefaults on request and still reads zeros', () => {
    using segment = Segment.create(1 << 20, { prefault: true })
    expect(segment.bytes[(1 << 20) - 1]).toBe(0)
  })

  it('shows its name in /proc as memfd:<name>', async () => {
    using segment = Segment.create(4096, { name: 'visible-name' })
    const { readlinkSync } = await import('node:fs')
    expect(readlinkSync(`/proc/self/fd/${segment.fd}`)).toMatch(/^\/memfd:visible-name/)
  })

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX_SEGMENT_SIZE + 1, '4096', undefined])(
    'refuses size %s with ERR_SHM_INVALID_SIZE before any syscall',
    (size) => {
      const fds = fdCount()
      expect(thrown(() => Segment.create(size as number)).code).toBe('ERR_SHM_INVALID_SIZE')
      expect(fdCount()).toBe(fds)
    },
  )

  it('refuses a debug name with NUL or over 249 bytes', () => {
    expect(thrown(() => Segment.create(4096, { name: 'a\0b' })).code).toBe('ERR_SHM_INVALID_NAME')
    expect(thrown(() => Segment.create(4096, { name: 'x'.repeat(250) })).code).toBe('ERR_SHM_INVALID_NAME')
  })
})

describe('close and safe release', () => {
  it('is idempotent, closes the fd, and later access says ERR_SHM_CLOSED', () => {
    const segment = Segment.create(4096)
    const fd = segment.fd
    segment.close()
    segment.close()
    expect(segment.closed).toBe(true)
    expect(isOpen(fd)).toBe(false)
    for (const access of [
      () => segment.bytes,
      () => segment.fd,
      () => segment.buffer,
      () => segment.seals,
      () => segment.seal('shrink'),
      () => segment.int32Array(),
    ]) {
      expect(thrown(access).code).toBe('ERR_SHM_CLOSED')
    }
    expect(segment.size).toBe(4096)
  })

  it('kept views read zeros after close, and writes through them reach no one', () => {
    const segment = Segment.create(8192)
    const other = Segment.fromFd(reopen(segment))
    segment.bytes.fill(7)
    const kept = segment.bytes
    segment.close()
    expect(kept.length).toBe(8192)
    expect(kept.every((byte) => byte === 0)).toBe(true)
    kept.fill(9)
    // The other mapping of the same memory still holds what was written before the close.
    expect(other.bytes.every((byte) => byte === 7)).toBe(true)
    other.close()
  })

  it('Symbol.dispose closes', () => {
    let fd = -1
    {
      using segment = Segment.create(4096)
      fd = segment.fd
    }
    expect(isOpen(fd)).toBe(false)
  })
})

describe('typed-array windows', () => {
  it('gives aligned Int32Array and BigInt64Array windows over the same memory', () => {
    using segment = Segment.create(4096)
    const ints = segment.int32Array()
    expect(ints.length).toBe(1024)
    const big = segment.bigInt64Array(8, 2)
    expect(big.length).toBe(2)
    Atomics.store(big, 0, -2n)
    expect(Atomics.load(ints, 2)).toBe(-2)
    expect(Atomics.load(ints, 3)).toBe(-1)
    expect(Atomics.add(segment.int32Array(4088, 2), 1, 5)).toBe(0)
    expect(segment.bytes[4092]).toBe(5)
  })

  it('refuses misaligned offsets with ERR_SHM_MISALIGNED', () => {
    using segment = Segment.create(4096)
    expect(thrown(() => segment.int32Array(2)).code).toBe('ERR_SHM_MISALIGNED')
    expect(thrown(() => segment.bigInt64Array(4)).code).toBe('ERR_SHM_MISALIGNED')
  })

  it('refuses windows outside the segment with ERR_SHM_OUT_OF_RANGE', () => {
    using segment = Segment.create(4096)
    expect(thrown(() => segment.int32Array(8192)).code).toBe('ERR_SHM_OUT_OF_RANGE')
    expect(thrown(() => segment.int32Array(-4)).code).toBe('ERR_SHM_OUT_OF_RANGE')
    expect(thrown(() => segment.int32Array(0, 1025)).code).toBe('ERR_SHM_OUT_OF_RANGE')
    expect(thrown(() => segment.bigInt64Array(4088, 2)).code).toBe('ERR_SHM_OUT_OF_RANGE')
    expect(thrown(() => segment.int32Array(0, 1.5)).code).toBe('ERR_SHM_OUT_OF_RANGE')
  })
})

describe('seals', () => {
  it('after sealing shrink and grow, ftruncate fails with EPERM', () => {
    using segment = Segment.create(8192)
    segment.seal('shrink', 'grow')
    expect(segment.seals).toEqual(expect.arrayContaining(['shrink', 'grow']))
    expect(() => ftruncateSync(segment.fd, 4096)).toThrow(expect.objectContaining({ code: 'EPERM' }))
    expect(() => ftruncateSync(segment.fd, 16384)).toThrow(expect.objectContaining({ code: 'EPERM' }))
    expect(fstatSync(segment.fd).size).toBe(8192)
  })

  it("'write' with our own writable mapping alive is ERR_SHM_EBUSY and says what to do", () => {
    using segment = Segment.create(4096)
    const error = thrown(() => segment.seal('write'))
    expect(error.code).toBe('ERR_SHM_EBUSY')
    expect(error.errno).toBe(-16)
    expect(error.syscall).toBe('fcntl')
    expect(error.message).toMatch(/future-write/)
  })

  it("after 'seal', no seal can be added: ERR_SHM_EPERM", () => {
    using segment = Segment.create(4096)
    segment.seal('shrink', 'seal')
    expect(thrown(() => segment.seal('grow')).code).toBe('ERR_SHM_EPERM')
  })

  it('refuses unknown seal names with ERR_SHM_INVALID_ARGUMENT', () => {
    using segment = Segment.create(4096)
    expect(thrown(() => segment.seal('shrink', 'toString' as 'shrink')).code).toBe('ERR_SHM_INVALID_ARGUMENT')
  })

  it('fromFd with requireSeals refuses an unsealed memfd, closes its fd, maps nothing', () => {
    using segment = Segment.create(4096)
    const baseline = fdCount()
    const fd = reopen(segment)
    const error = thrown(() => Segment.fromFd(fd, { requireSeals: true }))
    expect(error.code).toBe('ERR_SHM_UNSEALED')
    expect(error.message).toMatch(/shrink/)
    expect(isOpen(fd)).toBe(false)
    expect(fdCount()).toBe(baseline)
  })

  it('read-only requireSeals also needs a write seal; future-write or write will do', () => {
    using segment = Segment.create(4096)
    segment.seal('shrink', 'grow')
    const fd = reopen(segment, 'r')
    const error = thrown(() => Segment.fromFd(fd, { readonly: true, requireSeals: true }))
    expect(error.code).toBe('ERR_SHM_UNSEALED')
    expect(error.message).toMatch(/write or future-write/)
    expect(isOpen(fd)).toBe(false)
    // A writable receiver only needs the shrink seal.
    Segment.fromFd(reopen(segment), { requireSeals: true }).close()
    segment.seal('future-write')
    segment.bytes[0] = 42 // the sender's existing mapping still writes
    using reader = Segment.fromFd(reopen(segment, 'r'), { readonly: true, requireSeals: true })
    expect(reader.bytes[0]).toBe(42)
  })

  it('a fully write-sealed memfd maps read-only once no writable mapping is left', () => {
    const writer = Segment.create(4096)
    writer.bytes.set([1, 2, 3])
    // Keep a writable fd (sealing needs one) but drop the writable shared mapping.
    const fd = reopen(writer, 'r+')
    writer.close()
    using holder = Segment.fromFd(fd, { readonly: true })
    holder.seal('shrink', 'grow', 'write', 'seal')
    using sealed = Segment.fromFd(openSync(`/proc/self/fd/${holder.fd}`, 'r'), {
      readonly: true,
      requireSeals: ['shrink', 'grow', 'write', 'seal'],
    })
    expect([...sealed.bytes.subarray(0, 3)]).toEqual([1, 2, 3])
    // Nobody can map it writable any more.
    expect(thrown(() => Segment.fromFd(openSync(`/proc/self/fd/${holder.fd}`, 'r+'))).code).toBe('ERR_SHM_EPERM')
  })

  it('requireSeals must be a boolean or a list of seal names', () => {
    using segment = Segment.create(4096)
    const fd = reopen(segment)
    expect(thrown(() => Segment.fromFd(fd, { requireSeals: 'yes' as unknown as boolean })).code).toBe(
      'ERR_SHM_INVALID_ARGUMENT',
    )
    expect(isOpen(fd)).toBe(false)
    const fd2 = reopen(segment)
    expect(thrown(() => Segment.fromFd(fd2, { requireSeals: ['bogus' as 'shrink'] })).code).toBe(
      'ERR_SHM_INVALID_ARGUMENT',
    )
    expect(isOpen(fd2)).toBe(false)
  })
})

describe('Segment.fromFd', () => {
  it('maps another descriptor of the same memory, size from fstat', () => {
    using segment = Segment.create(12_288)
    segment.bytes[100] = 5
    using other = Segment.fromFd(reopen(segment))
    expect(other.size).toBe(12_288)
    expect(other.bytes[100]).toBe(5)
    other.bytes[200] = 6
    expect(segment.bytes[200]).toBe(6)
  })

  it('read-only: stray writes stay private (copy-on-write) and reach no one', () => {
    using segment = Segment.create(8192)
    segment.bytes[0] = 1
    using reader = Segment.fromFd(reopen(segment, 'r'), { readonly: true, prefault: true })
    expect(reader.readonly).toBe(true)
    expect(reader.bytes[0]).toBe(1)
    reader.bytes[0] = 99
    expect(segment.bytes[0]).toBe(1)
    // Pages the reader never wrote keep following the shared memory.
    segment.bytes[4096] = 3
    expect(reader.bytes[4096]).toBe(3)
  })

  it.each([-1, 1.5, 2 ** 31, Number.NaN, '3'])('refuses %s with ERR_SHM_INVALID_FD', (fd) => {
    expect(thrown(() => Segment.fromFd(fd as number)).code).toBe('ERR_SHM_INVALID_FD')
  })

  it('a descriptor that is not open is ERR_SHM_EBADF', () => {
    const fd = openSync('/dev/null', 'r')
    closeSync(fd)
    const error = thrown(() => Segment.fromFd(fd))
    expect(error.code).toBe('ERR_SHM_EBADF')
    expect(error.syscall).toBe('fstat')
  })

  it('a descriptor that is not a file is ERR_SHM_INVALID_FD, and is closed', () => {
    const fd = openSync('/dev/null', 'r')
    expect(thrown(() => Segment.fromFd(fd)).code).toBe('ERR_SHM_INVALID_FD')
    expect(isOpen(fd)).toBe(false)
  })

  it('an empty file is ERR_SHM_INVALID_SIZE, and is closed', () => {
    const path = join(tmpdir(), `ipc-pubsub-empty-${process.pid}`)
    writeFileSync(path, '')
    const fd = openSync(path, 'r+')
    expect(thrown(() => Segment.fromFd(fd)).code).toBe('ERR_SHM_INVALID_SIZE')
    expect(isOpen(fd)).toBe(false)
  })

  it('a read-only descriptor mapped for writing fails with ERR_SHM_EACCES, and is closed', () => {
    using segment = Segment.create(4096)
    const fd = reopen(segment, 'r')
    const error = thrown(() => Segment.fromFd(fd))
    expect(error.code).toBe('ERR_SHM_EACCES')
    expect(error.syscall).toBe('mmap')
    expect(isOpen(fd)).toBe(false)
  })
})

describe('named segments', () => {
  it('create, open elsewhere by name, share memory, unlink', () => {
    const name = sharedName('share')
    using a = Segment.openNamed(name, { create: 'exclusive', size: 8192, mode: 0o640 })
    expect(statSync(`/dev/shm/${name}`).mode & 0o777).toBe(0o640 & ~process.umask())
    using b = Segment.openNamed(`/${name}`)
    expect(b.size).toBe(8192)
    a.bytes[10] = 42
    expect(b.bytes[10]).toBe(42)
    using reader = Segment.openNamed(name, { readonly: true })
    expect(reader.bytes[10]).toBe(42)
    expect(a.unlink()).toBe(true)
    expect(a.unlink()).toBe(false)
    expect(Segment.unlinkNamed(name)).toBe(false)
    // Unlinking removes the name only: open mappings keep the memory.
    expect(b.bytes[10]).toBe(42)
  })

  it('create on an existing smaller segment grows it, never shrinks', () => {
    const name = sharedName('grow')
    using a = Segment.openNamed(name, { create: true, size: 4096 })
    using b = Segment.openNamed(name, { create: true, size: 8192 })
    expect(b.size).toBe(8192)
    using c = Segment.openNamed(name, { create: true, size: 4096 })
    expect(c.size).toBe(8192)
    expect(a.size).toBe(4096)
  })

  it('exclusive create of an existing name is ERR_SHM_EEXIST', () => {
    const name = sharedName('excl')
    using _a = Segment.openNamed(name, { create: 'exclusive', size: 4096 })
    const error = thrown(() => Segment.openNamed(name, { create: 'exclusive', size: 4096 }))
    expect(error.code).toBe('ERR_SHM_EEXIST')
    expect(error.syscall).toBe('shm_open')
    expect(error.errno).toBe(-17)
  })

  it('opening a missing name is ERR_SHM_ENOENT', () => {
    expect(thrown(() => Segment.openNamed(`ipc-pubsub-missing-${process.pid}`)).code).toBe('ERR_SHM_ENOENT')
  })

  it.each(['', '/', 'a/b', '//a', '..', '.', 'x'.repeat(251), 'nul\0byte', 42])(
    'refuses name %j with ERR_SHM_INVALID_NAME',
    (name) => {
      expect(thrown(() => Segment.openNamed(name as string, { create: true, size: 4096 })).code).toBe(
        'ERR_SHM_INVALID_NAME',
      )
    },
  )

  it('refuses inconsistent options before any syscall', () => {
    const name = sharedName('args')
    expect(thrown(() => Segment.openNamed(name, { create: true })).code).toBe('ERR_SHM_INVALID_SIZE')
    expect(thrown(() => Segment.openNamed(name, { create: true, size: -5 })).code).toBe('ERR_SHM_INVALID_SIZE')
    expect(thrown(() => Segment.openNamed(name, { create: 'maybe' as 'exclusive', size: 4096 })).code).toBe(
      'ERR_SHM_INVALID_ARGUMENT',
    )
    expect(thrown(() => Segment.openNamed(name, { create: true, size: 4096, mode: 0o1000 })).code).toBe(
      'ERR_SHM_INVALID_ARGUMENT',
    )
    expect(thrown(() => Segment.openNamed(name, { readonly: true, create: true, size: 4096 })).code).toBe(
      'ERR_SHM_INVALID_ARGUMENT',
    )
    expect(readdirSync('/dev/shm')).not.toContain(name)
  })

  it('an existing empty segment cannot be mapped: ERR_SHM_INVALID_SIZE, and an exclusive create cleans up', () => {
    const name = sharedName('empty')
    // O_CREAT without a size leaves a zero-length object, as a crashed creator might.
    closeSync(openSync(`/dev/shm/${name}`, 'w'))
    expect(thrown(() => Segment.openNamed(name)).code).toBe('ERR_SHM_INVALID_SIZE')
  })

  it('unlink() on an anonymous segment is ERR_SHM_INVALID_ARGUMENT; named ones cannot be sealed', () => {
    using anonymous = Segment.create(4096)
    expect(thrown(() => anonymous.unlink()).code).toBe('ERR_SHM_INVALID_ARGUMENT')
    const name = sharedName('seal')
    using named = Segment.openNamed(name, { create: true, size: 4096 })
    expect(named.seals).toEqual(['seal'])
    expect(thrown(() => named.seal('shrink')).code).toBe('ERR_SHM_EPERM')
  })
})

describe('ShmError', () => {
  it('is recognised across copies by isInstance and carries a stable code', () => {
    const error = thrown(() => Segment.create(0))
    expect(error).toBeInstanceOf(Error)
    expect(error.name).toBe('ShmError')
    expect(ShmError.isInstance(new Error('x'))).toBe(false)
    expect(ShmError.isInstance(null)).toBe(false)
    expect(error.errno).toBeUndefined()
  })
})
