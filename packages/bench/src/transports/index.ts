import type { TransportId } from '../job.js'
import type { TransportModule } from './types.js'

/** Loads only the module a worker needs, so no process carries another transport's code. */
export async function loadTransport(id: TransportId): Promise<TransportModule> {
  if (id.startsWith('ipc-pubsub:')) return (await import('./pubsub.js')).pubsub
  if (id === 'node:net') return (await import('./net.js')).net
  if (id === 'child_process') return (await import('./child-process.js')).childProcess
  if (id === 'zeromq') return (await import('./zeromq.js')).zeromq
  throw new Error(`unknown transport ${id}`)
}
