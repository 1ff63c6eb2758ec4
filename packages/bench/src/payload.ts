// What every benchmark message carries, whatever the transport. The publisher writes every
// byte of every message (a producer's work, the same for each transport) and stamps a header;
// the subscriber reads one byte per 4 KiB page and checks a checksum over them, so each
// subscriber really touches the whole message (for a mapped segment that means faulting
// every page in) and a stale, torn or foreign buffer is caught.
//
// Header, little-endian:
//   0  u32  magic 'IPBS'
//   4  u32  seq
//   8  u64  sentAt: process.hrtime.bigint() just before the send (CLOCK_MONOTONIC, one clock
//           for every process on the machine)
//   16 u32  checksum: FNV-1a over the sampled bytes, seeded with seq
//   20 u32  size of the whole message

export const HEADER_SIZE = 24
export const MIN_MESSAGE_SIZE = HEADER_SIZE + 1
const MAGIC = 0x53425049 // 'IPBS' read as little-endian
/** Distance between sampled bytes: one per page. */
export const SAMPLE_STRIDE = 4096

// The sampled bytes: every SAMPLE_STRIDE-th from HEADER_SIZE on, plus the last byte when the
// stride does not land on it. stamp() and checksum() walk them with the same loop (no array per
// message); samplePositions() lists them for tests.
const lastIsExtra = (size: number): boolean => (size - 1 - HEADER_SIZE) % SAMPLE_STRIDE !== 0

/** Offsets of the sampled bytes: one per page after the header, and the last byte. */
export function samplePositions(size: number): number[] {
  const positions: number[] = []
  for (let p = HEADER_SIZE; p < size; p += SAMPLE_STRIDE) positions.push(p)
  if (lastIsExtra(size)) positions.push(size - 1)
  return positions
}

function sampleValue(seq: number, position: number): number {
  return (Math.imul(seq, 31) + Math.imul(position >>> 12, 7) + position) & 0xff
}

function checksum(bytes: Uint8Array, seq: number): number {
  let hash = (0x811c9dc5 ^ seq) >>> 0
  const size = bytes.length
  for (let p = HEADER_SIZE; p < size; p += SAMPLE_STRIDE) hash = Math.imul(hash ^ (bytes[p] as number), 0x01000193)
  if (lastIsExtra(size)) hash = Math.imul(hash ^ (bytes[size - 1] as number), 0x01000193)
  return hash >>> 0
}

/** Fills `bytes` as message `seq`: every byte written, header stamped with the time now. */
export function stamp(bytes: Uint8Array, seq: number): Uint8Array {
  const size = bytes.length
  if (size < MIN_MESSAGE_SIZE) throw new RangeError(`a message needs at least ${MIN_MESSAGE_SIZE} bytes, got ${size}`)
  bytes.fill(seq & 0xff, HEADER_SIZE)
  for (let p = HEADER_SIZE; p < size; p += SAMPLE_STRIDE) bytes[p] = sampleValue(seq, p)
  if (lastIsExtra(size)) bytes[size - 1] = sampleValue(seq, size - 1)
  const view = new DataView(bytes.buffer, bytes.byteOffset, size)
  view.setUint32(0, MAGIC, true)
  view.setUint32(4, seq >>> 0, true)
  view.setUint32(16, checksum(bytes, seq >>> 0), true)
  view.setUint32(20, size, true)
  view.setBigUint64(8, process.hrtime.bigint(), true)
  return bytes
}

/** A verified message header. */
export interface Stamp {
  seq: number
  sentAt: bigint
}

/** Checks a received message; returns its header, or why it is not the message it claims to be. */
export function verify(bytes: Uint8Array): Stamp | string {
  const size = bytes.length
  if (size < MIN_MESSAGE_SIZE) return `message of ${size} bytes is shorter than a header`
  const view = new DataView(bytes.buffer, bytes.byteOffset, size)
  if (view.getUint32(0, true) !== MAGIC) return 'bad magic'
  if (view.getUint32(20, true) !== size) return `size field ${view.getUint32(20, true)} but ${size} bytes arrived`
  const seq = view.getUint32(4, true)
  if (view.getUint32(16, true) !== checksum(bytes, seq)) return `checksum mismatch in message ${seq}`
  return { seq, sentAt: view.getBigUint64(8, true) }
}
