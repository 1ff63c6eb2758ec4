// Length-prefixed framing for the node:net baseline: a u32 little-endian length, then the
// bytes. This is what a user would write over a stream socket. A frame that arrives in one
// chunk is handed out as a view of that chunk; one split across chunks is assembled into its
// own buffer (one copy, the least a stream socket allows).

export const FRAME_HEADER = 4
export const MAX_FRAME = 0xffff_ffff

/** Returns the 4-byte length prefix for a frame of `length` bytes. */
export function frameHeader(length: number): Buffer {
  if (!Number.isInteger(length) || length < 0 || length > MAX_FRAME) throw new RangeError(`frame length ${length} is out of range`)
  const header = Buffer.allocUnsafe(FRAME_HEADER)
  header.writeUInt32LE(length, 0)
  return header
}

/** Turns stream chunks back into frames. */
export class FrameReader {
  #header = Buffer.alloc(FRAME_HEADER)
  #headerFill = 0
  #body: Buffer | null = null
  #bodyFill = 0

  /** Feeds one chunk; returns the frames it completed, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = []
    let offset = 0
    while (offset < chunk.length) {
      if (this.#body === null) {
        if (this.#headerFill === 0 && chunk.length - offset >= FRAME_HEADER) {
          const length = (chunk[offset] as number) | ((chunk[offset + 1] as number) << 8) | ((chunk[offset + 2] as number) << 16) | ((chunk[offset + 3] as number) << 24)
          offset += FRAME_HEADER
          offset = this.#begin(length >>> 0, chunk, offset, frames)
          continue
        }
        const take = Math.min(FRAME_HEADER - this.#headerFill, chunk.length - offset)
        this.#header.set(chunk.subarray(offset, offset + take), this.#headerFill)
        this.#headerFill += take
        offset += take
        if (this.#headerFill < FRAME_HEADER) break
        this.#headerFill = 0
        offset = this.#begin(this.#header.readUInt32LE(0), chunk, offset, frames)
        continue
      }
      const take = Math.min(this.#body.length - this.#bodyFill, chunk.length - offset)
      this.#body.set(chunk.subarray(offset, offset + take), this.#bodyFill)
      this.#bodyFill += take
      offset += take
      if (this.#bodyFill === this.#body.length) {
        frames.push(this.#body)
        this.#body = null
      }
    }
    return frames
  }

  /** True when no partial frame is buffered. */
  get idle(): boolean {
    return this.#body === null && this.#headerFill === 0
  }

  #begin(length: number, chunk: Uint8Array, offset: number, frames: Uint8Array[]): number {
    if (chunk.length - offset >= length) {
      frames.push(chunk.subarray(offset, offset + length))
      return offset + length
    }
    this.#body = Buffer.allocUnsafe(length)
    this.#bodyFill = 0
    return offset
  }
}
