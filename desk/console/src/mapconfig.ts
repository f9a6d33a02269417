// The deployment's map settings (GET /api/v1/desk/console-config): tiles when configured, else none.
import { reactive } from 'vue'
import { api, ok } from './api/client'

export const mapConfig = reactive({ tileUrl: null as string | null, loaded: false })

export async function loadMapConfig(): Promise<void> {
  if (mapConfig.loaded) return
  const config = await ok(api.GET('/api/v1/desk/console-config'))
  mapConfig.tileUrl = config.map_tile_url ?? null
  mapConfig.loaded = true
}

const ORIGIN_SHIFT = 156543.03392804097 // metres per pixel at zoom 0 on the equator (256-pixel tiles)

/** The zoom whose resolution is closest to ``metresPerPixel`` at ``lat`` (3–18). */
export function zoomFor(lat: number, metresPerPixel: number): number {
  const z = Math.round(Math.log2((ORIGIN_SHIFT * Math.cos((lat * Math.PI) / 180)) / metresPerPixel))
  return Math.max(3, Math.min(18, z))
}

/** The tile (x, y) holding a point at zoom ``z`` (slippy-map numbering). */
export function tileOf(lat: number, lng: number, z: number): [number, number] {
  const n = 2 ** z
  const r = (lat * Math.PI) / 180
  return [Math.floor(((lng + 180) / 360) * n), Math.floor(((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * n)]
}

/** The north-west corner of tile (x, y) at zoom ``z``. */
export function tileCorner(x: number, y: number, z: number): { lat: number; lng: number } {
  const n = 2 ** z
  return { lng: (x / n) * 360 - 180, lat: (Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / n))) * 180) / Math.PI }
}

export function tileHref(template: string, x: number, y: number, z: number): string {
  return template.replace('{z}', String(z)).replace('{x}', String(x)).replace('{y}', String(y)).replace('{s}', String(((x + y) % 4) + 1))
}
