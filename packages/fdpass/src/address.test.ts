import { describe, expect, it } from 'vitest'
import { MAX_ABSTRACT_NAME_BYTES, MAX_PATH_BYTES, parseAddress } from './address.js'

describe('parseAddress', () => {
  it('writes an abstract name exact-length: family, one NUL, the UTF-8 bytes, no padding', () => {
    const parsed = parseAddress('@büs')
    expect(parsed.kind).toBe('abstract')
    expect([...parsed.sockaddr]).toEqual([1, 0, 0, ...Buffer.from('büs')])
    expect(parsed.sockaddr.length).toBe(2 + 1 + Buffer.byteLength('büs'))
  })

  it('writes a path NUL-terminated', () => {
    const parsed = parseAddress('/tmp/x.sock')
    expect(parsed).toMatchObject({ kind: 'path', path: '/tmp/x.sock' })
    expect([...parsed.sockaddr]).toEqual([1, 0, ...Buffer.from('/tmp/x.sock'), 0])
  })

  it('treats ./@name as a path', () => {
    expect(parseAddress('./@x').kind).toBe('path')
  })

  it('takes names and paths up to the size of sun_path', () => {
    expect(parseAddress(`@${'a'.repeat(MAX_ABSTRACT_NAME_BYTES)}`).sockaddr.length).toBe(110)
    expect(parseAddress('a'.repeat(MAX_PATH_BYTES)).sockaddr.length).toBe(110)
  })

  it.each([
    ['an empty string', ''],
    ['a bare @', '@'],
    ['a name too long', `@${'a'.repeat(MAX_ABSTRACT_NAME_BYTES + 1)}`],
    ['a path too long', 'a'.repeat(MAX_PATH_BYTES + 1)],
    ['a NUL inside', '@a\0b'],
    ['a number', 42],
    ['undefined', undefined],
  ])('refuses %s with ERR_FDPASS_INVALID_ADDRESS', (_, address) => {
    expect(() => parseAddress(address)).toThrow(expect.objectContaining({ code: 'ERR_FDPASS_INVALID_ADDRESS' }))
  })
})
