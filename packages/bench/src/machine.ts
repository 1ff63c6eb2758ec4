// The machine a report was measured on.
import { readFileSync } from 'node:fs'
import { cpus, release, totalmem } from 'node:os'
import { clockTicksPerSecond } from './native.js'

export interface MachineInfo {
  cpu: string
  cores: number
  kernel: string
  node: string
  memoryGiB: number
  arch: string
  /** USER_HZ: the unit of CPU times in /proc/<pid>/stat. */
  clockTicksPerSecond: number
}

export function machineInfo(): MachineInfo {
  const list = cpus()
  return {
    cpu: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    kernel: release(),
    node: process.version,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    arch: process.arch,
    clockTicksPerSecond: clockTicksPerSecond(),
  }
}

/** The CPUs this process may run on (Cpus_allowed_list in /proc/self/status), ascending. */
export function allowedCpus(status: string = readFileSync('/proc/self/status', 'utf8')): number[] {
  const list = /^Cpus_allowed_list:\s*(.+)$/m.exec(status)?.[1]?.trim()
  if (!list) return []
  const cpus: number[] = []
  for (const part of list.split(',')) {
    const [from, to] = part.split('-').map(Number)
    if (from === undefined || !Number.isInteger(from)) continue
    for (let cpu = from; cpu <= (to ?? from); cpu++) cpus.push(cpu)
  }
  return cpus
}
