import { FdpassError } from './errors.js'
import { AF_UNIX, SUN_PATH_OFFSET, SUN_PATH_SIZE } from './native.js'

/**
 * A parsed address. `@name` is a Linux abstract-namespace name; anything else is a
 * filesystem path (write `./@name` for a file whose name starts with `@`).
 */
export type ParsedAddress =
  | { readonly kind: 'abstract'; readonly name: string; readonly sockaddr: Buffer }
  | { readonly kind: 'path'; readonly path: string; readonly sockaddr: Buffer }

/** The longest abstract name in bytes: sun_path minus its leading NUL. */
export const MAX_ABSTRACT_NAME_BYTES = SUN_PATH_SIZE - 1
/** The longest filesystem path in bytes: sun_path minus the terminating NUL. */
export const MAX_PATH_BYTES = SUN_PATH_SIZE - 1

/**
 * Parses an address and builds its struct sockaddr_un.
 *
 * Convention for abstract names: exact length. sun_path holds a NUL then the name's UTF-8
 * bytes and addrlen is 2 + 1 + length, with no padding. (Node's `net` pads abstract names with
 * NULs to all 108 bytes, which the kernel treats as a different name: a `net` server and an
 * fdpass peer never meet on the same `@name`, and cannot by accident.)
 */
export function parseAddress(address: unknown, what = 'address'): ParsedAddress {
  if (typeof address !== 'string' || address.length === 0) {
    throw new FdpassError('ERR_FDPASS_INVALID_ADDRESS', `${what} must be a non-empty string ('@name' or a path)`)
  }
  if (address.includes('\0')) {
    throw new FdpassError('ERR_FDPASS_INVALID_ADDRESS', `${what} must not contain NUL characters`)
  }
  if (address.startsWith('@')) {
    const name = address.slice(1)
    const bytes = Buffer.from(name, 'utf8')
    if (bytes.length === 0 || bytes.length > MAX_ABSTRACT_NAME_BYTES) {
      throw new FdpassError(
        'ERR_FDPASS_INVALID_ADDRESS',
        `${what} ${JSON.stringify(address)}: an abstract name takes 1 to ${MAX_ABSTRACT_NAME_BYTES} bytes`,
      )
    }
    const sockaddr = Buffer.alloc(SUN_PATH_OFFSET + 1 + bytes.length)
    sockaddr.writeUInt16LE(AF_UNIX, 0)
    bytes.copy(sockaddr, SUN_PATH_OFFSET + 1) // sun_path[0] stays NUL: the abstract marker
    return { kind: 'abstract', name, sockaddr }
  }
  const bytes = Buffer.from(address, 'utf8')
  if (bytes.length > MAX_PATH_BYTES) {
    throw new FdpassError(
      'ERR_FDPASS_INVALID_ADDRESS',
      `${what} ${JSON.stringify(address)}: a socket path takes at most ${MAX_PATH_BYTES} bytes`,
    )
  }
  const sockaddr = Buffer.alloc(SUN_PATH_OFFSET + bytes.length + 1) // with the NUL terminator
  sockaddr.writeUInt16LE(AF_UNIX, 0)
  bytes.copy(sockaddr, SUN_PATH_OFFSET)
  return { kind: 'path', path: address, sockaddr }
}
