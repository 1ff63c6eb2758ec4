import { describe, expect, it } from 'vitest'
import { FdpassError } from './errors.js'
import { NativeError } from './native.js'

describe('FdpassError', () => {
  it('names errno codes after the errno and keeps errno negative, as Node does', () => {
    const error = FdpassError.fromNative(new NativeError('bind', 98), 'listen(@x)')
    expect(error).toMatchObject({ code: 'ERR_FDPASS_EADDRINUSE', errno: -98, syscall: 'bind', name: 'FdpassError' })
    expect(error.message).toBe('listen(@x): bind failed with EADDRINUSE')
  })

  it('is recognised across copies by its marker', () => {
    const error = new FdpassError('ERR_FDPASS_CLOSED', 'closed')
    expect(FdpassError.isInstance(error)).toBe(true)
    expect(FdpassError.isInstance(new Error('x'))).toBe(false)
    expect(FdpassError.isInstance({ [Symbol.for('@ipc-pubsub/fdpass.FdpassError')]: true })).toBe(true)
    expect(FdpassError.isInstance(null)).toBe(false)
  })

  it('keeps the cause it wraps', () => {
    const cause = new Error('inner')
    expect(new FdpassError('ERR_FDPASS_UNAUTHORIZED', 'x', { cause }).cause).toBe(cause)
  })

  it('rethrows what is not a failed syscall', () => {
    const other = new TypeError('bug')
    expect(() => FdpassError.fromNative(other, 'x')).toThrow(other)
  })
})
