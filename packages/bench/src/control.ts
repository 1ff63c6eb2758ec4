// The control channel between the coordinator and its workers: newline-delimited JSON over a
// Unix socket. It carries a handful of messages per run, all outside the measured windows.
import { once } from 'node:events'
import { createConnection, type Socket } from 'node:net'

/** Splits a byte stream into JSON values, one per line. */
export class LineDecoder {
  #pending = ''

  push(chunk: string): unknown[] {
    this.#pending += chunk
    const lines = this.#pending.split('\n')
    this.#pending = lines.pop() ?? ''
    return lines.filter((line) => line.length > 0).map((line) => JSON.parse(line) as unknown)
  }
}

type Typed = { type: string }

/**
 * One end of a control connection. Messages wait in an inbox until someone asks for their
 * type, so none is lost to a listener attached a tick late. A peer's `{ type: 'error' }`
 * fails every wait, and so does the connection closing.
 */
export class ControlSocket<In extends Typed, Out extends Typed> {
  readonly socket: Socket
  /** The peer's pid, once it said hello (coordinator side). */
  pid = 0
  #inbox: In[] = []
  #wake = new Set<() => void>()
  #closed = false

  constructor(socket: Socket) {
    this.socket = socket
    const decoder = new LineDecoder()
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      try {
        this.#inbox.push(...(decoder.push(chunk) as In[]))
      } catch (error) {
        socket.destroy(error as Error)
      }
      this.#notify()
    })
    socket.on('close', () => {
      this.#closed = true
      this.#notify()
    })
    socket.on('error', () => {})
  }

  get closed(): boolean {
    return this.#closed
  }

  send(message: Out): void {
    if (!this.socket.destroyed) this.socket.write(`${JSON.stringify(message)}\n`)
  }

  /** Resolves with the next message of this type (taking it out of the inbox). */
  async next<T extends In['type']>(type: T): Promise<Extract<In, { type: T }>> {
    for (;;) {
      const index = this.#inbox.findIndex((message) => message.type === type)
      if (index >= 0) return this.#inbox.splice(index, 1)[0] as Extract<In, { type: T }>
      const failure = this.#inbox.find((message) => message.type === 'error') as { message?: string } | undefined
      if (failure) throw new Error(failure.message ?? 'the peer reported an error')
      if (this.#closed) throw new Error(`control channel closed while waiting for '${type}'`)
      await new Promise<void>((resolve) => this.#wake.add(resolve))
    }
  }

  /** Never resolves; rejects once the peer reports an error or the connection closes. */
  async broken(): Promise<never> {
    await this.next('\u0000never' as In['type'])
    throw new Error('unreachable')
  }

  /** Flushes what was sent and closes. */
  async end(): Promise<void> {
    if (this.socket.destroyed) return
    const closed = once(this.socket, 'close')
    this.socket.end()
    await closed
  }

  #notify(): void {
    const wake = [...this.#wake]
    this.#wake.clear()
    for (const resolve of wake) resolve()
  }

  static async connect<In extends Typed, Out extends Typed>(address: string): Promise<ControlSocket<In, Out>> {
    const socket = createConnection(address)
    await once(socket, 'connect')
    return new ControlSocket<In, Out>(socket)
  }
}
