import { describe, expect, it } from 'vitest'
import { tileCorner, tileHref, tileOf, zoomFor } from './mapconfig'

describe('map tiles', () => {
  it('finds the tile of a point in Baotou and its corner', () => {
    const [x, y] = tileOf(40.652, 109.832, 14)
    expect([x, y]).toEqual([13190, 6163]) // by hand: x = ⌊289.832/360·2¹⁴⌋, y = ⌊(1 − asinh(tan φ)/π)/2·2¹⁴⌋
    const nw = tileCorner(x, y, 14)
    const se = tileCorner(x + 1, y + 1, 14)
    expect(nw.lat).toBeGreaterThan(40.652)
    expect(se.lat).toBeLessThan(40.652)
    expect(nw.lng).toBeLessThan(109.832)
    expect(se.lng).toBeGreaterThan(109.832)
  })
  it('picks a zoom for the scale', () => {
    expect(zoomFor(40.65, 3.3)).toBe(15)
    expect(zoomFor(40.65, 1e6)).toBe(3)
  })
  it('fills the template', () => {
    expect(tileHref('https://t{s}.example/{z}/{x}/{y}.png', 5, 2, 9)).toBe('https://t4.example/9/5/2.png')
  })
})
