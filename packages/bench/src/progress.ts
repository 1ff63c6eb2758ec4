// Progress while the bench runs: one line rewritten in place on a terminal, plain lines
// (one per finished step) anywhere else, so logs stay readable.

export interface ProgressStream {
  write(text: string): unknown
  isTTY?: boolean
}

export class Progress {
  readonly #stream: ProgressStream
  readonly #total: number
  #done = 0
  #dirty = false

  constructor(total: number, stream: ProgressStream = process.stderr) {
    this.#total = total
    this.#stream = stream
  }

  #prefix(n: number): string {
    const width = String(this.#total).length
    return `[${String(n).padStart(width)}/${this.#total}]`
  }

  /** A step begins (terminal only: shows what is running now). */
  start(label: string): void {
    if (!this.#stream.isTTY) return
    this.#stream.write(`\r\x1b[K${this.#prefix(this.#done + 1)} ${label} …`)
    this.#dirty = true
  }

  /** A step ended, with a short outcome. */
  finish(label: string, outcome: string): void {
    this.#done++
    if (this.#stream.isTTY) {
      this.#stream.write(`\r\x1b[K${this.#prefix(this.#done)} ${label}: ${outcome}`)
      this.#dirty = true
    } else {
      this.#stream.write(`${this.#prefix(this.#done)} ${label}: ${outcome}\n`)
    }
  }

  /** A line that stays (a section heading, a warning). */
  note(text: string): void {
    this.#clear()
    this.#stream.write(`${text}\n`)
  }

  /** Ends the in-place line. */
  end(): void {
    this.#clear()
  }

  #clear(): void {
    if (this.#dirty) this.#stream.write('\r\x1b[K')
    this.#dirty = false
  }
}
