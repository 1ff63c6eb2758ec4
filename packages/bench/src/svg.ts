// A line chart as a standalone SVG: x is message size (log 2), y is throughput (log 10), one
// line per transport. No dependencies; the output is deterministic for the same input.
import { formatSize } from './report.js'

export interface Series {
  name: string
  points: { size: number; value: number }[]
}

export interface ChartOptions {
  title: string
  yLabel: string
  width?: number
  height?: number
}

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf']

function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

const round = (n: number): string => String(Math.round(n * 10) / 10)

/** Renders the series; points with a non-positive or non-finite value are left out. */
export function renderChart(series: readonly Series[], options: ChartOptions): string {
  const width = options.width ?? 760
  const height = options.height ?? 440
  const margin = { top: 48, right: 190, bottom: 56, left: 76 }
  const plotW = width - margin.left - margin.right
  const plotH = height - margin.top - margin.bottom
  const clean = series.map((s) => ({ name: s.name, points: s.points.filter((p) => p.size > 0 && p.value > 0 && Number.isFinite(p.value)).sort((a, b) => a.size - b.size) }))
  const all = clean.flatMap((s) => s.points)
  const sizes = [...new Set(all.map((p) => p.size))].sort((a, b) => a - b)
  const values = all.map((p) => p.value)
  const xMin = Math.log2(sizes[0] ?? 1)
  const xMax = Math.log2(sizes[sizes.length - 1] ?? 2)
  const yMin = Math.floor(Math.log10(values.length ? Math.min(...values) : 1))
  const yMax = Math.max(yMin + 1, Math.ceil(Math.log10(values.length ? Math.max(...values) : 10)))
  const x = (size: number): number => margin.left + (xMax === xMin ? plotW / 2 : ((Math.log2(size) - xMin) / (xMax - xMin)) * plotW)
  const y = (value: number): number => margin.top + plotH - ((Math.log10(value) - yMin) / (yMax - yMin)) * plotH

  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`)
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${xml(options.title)}</text>`)
  // Grid and y ticks at every power of ten.
  for (let e = yMin; e <= yMax; e++) {
    const yy = round(y(10 ** e))
    parts.push(`<line x1="${margin.left}" y1="${yy}" x2="${margin.left + plotW}" y2="${yy}" stroke="#dddddd"/>`)
    parts.push(`<text x="${margin.left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle">${xml((10 ** e).toLocaleString('en-US'))}</text>`)
  }
  for (const size of sizes) {
    const xx = round(x(size))
    parts.push(`<line x1="${xx}" y1="${margin.top}" x2="${xx}" y2="${margin.top + plotH}" stroke="#eeeeee"/>`)
    parts.push(`<text x="${xx}" y="${margin.top + plotH + 18}" text-anchor="middle">${xml(formatSize(size))}</text>`)
  }
  parts.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333333"/>`)
  parts.push(`<text x="${margin.left + plotW / 2}" y="${height - 14}" text-anchor="middle">message size (log scale)</text>`)
  parts.push(`<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${xml(options.yLabel)}</text>`)
  clean.forEach((s, i) => {
    const color = COLORS[i % COLORS.length] as string
    if (s.points.length > 0) {
      const path = s.points.map((p) => `${round(x(p.size))},${round(y(p.value))}`).join(' ')
      parts.push(`<polyline data-series="${xml(s.name)}" points="${path}" fill="none" stroke="${color}" stroke-width="2.5"/>`)
      for (const p of s.points) parts.push(`<circle cx="${round(x(p.size))}" cy="${round(y(p.value))}" r="3.5" fill="${color}"/>`)
    }
    const ly = margin.top + 10 + i * 22
    parts.push(`<line x1="${margin.left + plotW + 16}" y1="${ly}" x2="${margin.left + plotW + 40}" y2="${ly}" stroke="${color}" stroke-width="2.5"/>`)
    parts.push(`<text x="${margin.left + plotW + 46}" y="${ly}" dominant-baseline="middle">${xml(s.name)}</text>`)
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}
