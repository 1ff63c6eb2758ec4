import { describe, expect, it } from 'vitest'
import { allowedCpus, machineInfo } from './machine.js'

const status = (list: string): string => `Name:\tnode\nUmask:\t0022\nState:\tR (running)\nCpus_allowed:\tff\nCpus_allowed_list:\t${list}\nMems_allowed:\t1\nMems_allowed_list:\t0\n`

describe('allowedCpus', () => {
  it('parses a range', () => {
    expect(allowedCpus('Cpus_allowed_list:\t0-1')).toEqual([0, 1])
    expect(allowedCpus(status('0-3'))).toEqual([0, 1, 2, 3])
  })

  it('parses a list of single CPUs and ranges', () => {
    expect(allowedCpus(status('0,2-3'))).toEqual([0, 2, 3])
    expect(allowedCpus(status('0-1,4-5,7'))).toEqual([0, 1, 4, 5, 7])
  })

  it('parses a single CPU', () => {
    expect(allowedCpus(status('3'))).toEqual([3])
    expect(allowedCpus('Cpus_allowed_list:\t3\n')).toEqual([3])
  })

  it('reads the list line, not Cpus_allowed (the hex mask) nor Mems_allowed_list', () => {
    expect(allowedCpus('Cpus_allowed:\tf\nMems_allowed_list:\t0-1\n')).toEqual([])
  })

  it('returns [] when the line is missing', () => {
    expect(allowedCpus('')).toEqual([])
    expect(allowedCpus('Name:\tnode\nState:\tS (sleeping)\n')).toEqual([])
  })

  it('tolerates whitespace around the list', () => {
    expect(allowedCpus('Cpus_allowed_list:\t 1-2  \n')).toEqual([1, 2])
  })

  it('reads /proc/self/status by default: a non-empty ascending list of CPU numbers', () => {
    const cpus = allowedCpus()
    expect(cpus.length).toBeGreaterThan(0)
    for (const cpu of cpus) expect(Number.isInteger(cpu) && cpu >= 0).toBe(true)
    for (let i = 1; i < cpus.length; i++) expect(cpus[i] as number).toBeGreaterThan(cpus[i - 1] as number)
  })
})

describe('machineInfo', () => {
  it('describes this machine', () => {
    const info = machineInfo()
    expect(Object.keys(info).sort()).toEqual(['arch', 'clockTicksPerSecond', 'cores', 'cpu', 'kernel', 'memoryGiB', 'node'])
    expect(info.clockTicksPerSecond).toBeGreaterThan(0)
    expect(info.cores).toBeGreaterThan(0)
    expect(info.node).toBe(process.version)
    expect(info.arch).toBe(process.arch)
    expect(info.memoryGiB).toBeGreaterThan(0)
    expect(info.cpu.length).toBeGreaterThan(0)
  })
})
