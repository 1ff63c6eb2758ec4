import { describe, expect, it } from 'vitest'
import { renderChart, type Series } from './svg.js'

const KiB = 1024
const MiB = 1024 * KiB
const OPTIONS = { title: 'Throughput', yLabel: 'MB/s' }

interface Polyline {
  name: string
  points: { x: number; y: number }[]
}

function unescapeXml(text: string): string {
  return text.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')
}

function polylines(svg: string): Polyline[] {
  return [...svg.matchAll(/<polyline data-series="([^"]*)" points="([^"]*)"/g)].map((m) => ({
    name: unescapeXml(m[1] as string),
    points: (m[2] as string).split(' ').map((pair) => {
      const [x, y] = pair.split(',').map(Number)
      return { x: x as number, y: y as number }
    }),
  }))
}

const sample = (): Series[] => [
  {
    name: 'ipc-pubsub:shm',
    points: [
      { size: 64, value: 50 },
      { size: 4 * KiB, value: 900 },
      { size: MiB, value: 9000 },
      { size: 16 * MiB, value: 12_000 },
    ],
  },
  {
    name: 'node:net',
    points: [
      { size: 64, value: 20 },
      { size: 4 * KiB, value: 600 },
      { size: MiB, value: 2000 },
      { size: 16 * MiB, value: 1800 },
    ],
  },
]

describe('renderChart', () => {
  it('is a standalone SVG document', () => {
    const svg = renderChart(sample(), OPTIONS)
    expect(svg.startsWith('<svg')).toBe(true)
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true)
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"')
    expect(svg.match(/<svg/g)).toHaveLength(1)
    expect(svg.match(/<\/svg>/g)).toHaveLength(1)
    expect(svg).not.toContain('NaN')
    expect(svg).not.toContain('Infinity')
    expect(svg).not.toContain('undefined')
  })

  it('honours width and height', () => {
    const svg = renderChart(sample(), { ...OPTIONS, width: 500, height: 300 })
    expect(svg).toContain('width="500" height="300" viewBox="0 0 500 300"')
    expect(renderChart(sample(), OPTIONS)).toContain('viewBox="0 0 760 440"')
  })

  it('draws one polyline per non-empty series, named after it', () => {
    const series: Series[] = [...sample(), { name: 'empty', points: [] }, { name: 'all-invalid', points: [{ size: 64, value: 0 }] }]
    const svg = renderChart(series, OPTIONS)
    expect(polylines(svg).map((p) => p.name)).toEqual(['ipc-pubsub:shm', 'node:net'])
    // every series still gets its legend entry
    expect(svg).toContain('>empty</text>')
    expect(svg).toContain('>all-invalid</text>')
  })

  it('escapes names, title and label for XML', () => {
    const svg = renderChart([{ name: 'a<b&c"d>', points: [{ size: 64, value: 1 }] }], { title: 'T <&> "q"', yLabel: 'y & <z>' })
    expect(svg).toContain('data-series="a&lt;b&amp;c&quot;d&gt;"')
    expect(svg).toContain('>a&lt;b&amp;c&quot;d&gt;</text>')
    expect(svg).toContain('T &lt;&amp;&gt; &quot;q&quot;')
    expect(svg).toContain('y &amp; &lt;z&gt;')
    expect(svg).not.toContain('a<b')
    expect(svg).not.toMatch(/&(?!amp;|lt;|gt;|quot;)/)
    expect(polylines(svg)[0]?.name).toBe('a<b&c"d>')
  })

  it('skips points whose value is 0, negative, NaN or infinite', () => {
    const svg = renderChart(
      [
        {
          name: 's',
          points: [
            { size: 64, value: 10 },
            { size: 128, value: 0 },
            { size: 256, value: Number.NaN },
            { size: 512, value: -5 },
            { size: 1024, value: Number.POSITIVE_INFINITY },
            { size: 2048, value: 100 },
          ],
        },
      ],
      OPTIONS,
    )
    const [line] = polylines(svg)
    expect(line?.points).toHaveLength(2)
    expect(svg.match(/<circle /g)).toHaveLength(2)
    expect(svg).not.toContain('NaN')
    // the skipped sizes get no axis tick either
    expect(svg).toContain('>64 B</text>')
    expect(svg).toContain('>2 KiB</text>')
    expect(svg).not.toContain('>128 B</text>')
    expect(svg).not.toContain('>1 KiB</text>')
  })

  it('places x by size: larger sizes further right, whatever the input order', () => {
    const shuffled: Series[] = [
      {
        name: 's',
        points: [
          { size: MiB, value: 5 },
          { size: 64, value: 5 },
          { size: 16 * MiB, value: 5 },
          { size: 4 * KiB, value: 5 },
        ],
      },
    ]
    const [line] = polylines(renderChart(shuffled, OPTIONS))
    const xs = (line?.points ?? []).map((p) => p.x)
    expect(xs).toHaveLength(4)
    for (let i = 1; i < xs.length; i++) expect(xs[i] as number).toBeGreaterThan(xs[i - 1] as number)
  })

  it('places larger values higher (smaller y)', () => {
    const svg = renderChart(sample(), OPTIONS)
    const [shm, net] = polylines(svg)
    expect(shm && net).toBeTruthy()
    for (let i = 0; i < 4; i++) {
      // shm is faster than net at every size in the sample
      expect((shm as Polyline).points[i]?.y as number).toBeLessThan((net as Polyline).points[i]?.y as number)
    }
    const shmYs = (shm as Polyline).points.map((p) => p.y)
    // shm increases with size, so its y decreases
    for (let i = 1; i < shmYs.length; i++) expect(shmYs[i] as number).toBeLessThan(shmYs[i - 1] as number)
  })

  it('keeps every point inside the plot area', () => {
    const svg = renderChart(sample(), OPTIONS)
    for (const line of polylines(svg)) {
      for (const p of line.points) {
        expect(p.x).toBeGreaterThanOrEqual(76)
        expect(p.x).toBeLessThanOrEqual(760 - 190)
        expect(p.y).toBeGreaterThanOrEqual(48)
        expect(p.y).toBeLessThanOrEqual(440 - 56)
      }
    }
  })

  it('labels the size axis with formatted sizes and the y axis with powers of ten', () => {
    const svg = renderChart(sample(), OPTIONS)
    for (const label of ['64 B', '4 KiB', '1 MiB', '16 MiB']) expect(svg).toContain(`>${label}</text>`)
    for (const label of ['10', '100', '1,000', '10,000', '100,000']) expect(svg).toContain(`>${label}</text>`)
  })

  it('is deterministic for the same input', () => {
    expect(renderChart(sample(), OPTIONS)).toBe(renderChart(sample(), OPTIONS))
  })

  it('renders a valid chart with no data or a single point', () => {
    for (const series of [[], [{ name: 'none', points: [] }], [{ name: 'one', points: [{ size: 4096, value: 42 }] }]]) {
      const svg = renderChart(series, OPTIONS)
      expect(svg.startsWith('<svg')).toBe(true)
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true)
      expect(svg).not.toContain('NaN')
      expect(svg).not.toContain('Infinity')
    }
    expect(polylines(renderChart([], OPTIONS))).toEqual([])
    expect(polylines(renderChart([{ name: 'one', points: [{ size: 4096, value: 42 }] }], OPTIONS))).toHaveLength(1)
  })

  it('cycles colours past the palette', () => {
    const many: Series[] = Array.from({ length: 10 }, (_, i) => ({ name: `s${i}`, points: [{ size: 64 << i, value: 10 + i }] }))
    const svg = renderChart(many, OPTIONS)
    const strokes = [...svg.matchAll(/<polyline [^>]*stroke="(#[0-9a-f]{6})"/g)].map((m) => m[1])
    expect(strokes).toHaveLength(10)
    expect(strokes[8]).toBe(strokes[0])
    expect(strokes[9]).toBe(strokes[1])
    expect(new Set(strokes.slice(0, 8)).size).toBe(8)
  })
})
