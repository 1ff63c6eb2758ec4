// Who this process is, and whether another node's process still exists: the facts a new hub
// uses to mint `node-left` for nodes that died with or before the old hub. Reads /proc only.
import { readFileSync, readlinkSync } from 'node:fs'
import type { NodeInfo } from './history.js'

/** This process as NodeInfo describes it: pid, start time and pid namespace. */
export interface ProcessIdentity {
  readonly pid: number
  readonly startTime: number | null
  readonly pidNamespace: string | null
}

/** Field 22 of /proc/<pid>/stat and the state letter (field 3), or undefined if there is no such process. */
function readStat(pid: number): { state: string; startTime: number } | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined
  }
  // Field 2 (comm) is in parentheses and may itself hold spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  const startTime = Number(fields[19])
  if (state === undefined || !Number.isSafeInteger(startTime)) return undefined
  return { state, startTime }
}

function readPidNamespace(): string | null {
  try {
    return readlinkSync('/proc/self/ns/pid')
  } catch {
    return null
  }
}

let self: ProcessIdentity | undefined

/** This process's identity (cached: none of it changes while the process lives). */
export function processIdentity(): ProcessIdentity {
  self ??= { pid: process.pid, startTime: readStat(process.pid)?.startTime ?? null, pidNamespace: readPidNamespace() }
  return self
}

/**
 * 'dead' when the node's process is verifiably gone: it shares our pid namespace and its
 * pid is free, a zombie, or now belongs to a process that started at another time (reuse).
 * 'alive' when the same process is there. 'unknown' when we cannot tell (another pid
 * namespace, or the node did not report its start time).
 */
export function processState(node: NodeInfo): 'alive' | 'dead' | 'unknown' {
  const me = processIdentity()
  if (node.pidNamespace === null || node.pidNamespace !== me.pidNamespace || node.startTime === null) return 'unknown'
  const stat = readStat(node.pid)
  if (stat === undefined) return 'dead'
  // Z: zombie (killed, not yet reaped by its parent). X: dead.
  if (stat.state === 'Z' || stat.state === 'X') return 'dead'
  return stat.startTime === node.startTime ? 'alive' : 'dead'
}
