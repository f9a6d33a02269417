// The API's label table (GET /api/v1/desk/labels): codes are never shown to people.
import { reactive } from 'vue'
import { api, ok } from './api/client'

export const labels = reactive<{ tables: Record<string, Record<string, string>> }>({ tables: {} })

export async function loadLabels(): Promise<void> {
  if (Object.keys(labels.tables).length) return
  const data = await ok(api.GET('/api/v1/desk/labels'))
  labels.tables = (data.tables ?? {}) as Record<string, Record<string, string>>
}

export function label(table: string, code: string | null | undefined): string {
  if (code === null || code === undefined || code === '') return ''
  return labels.tables[table]?.[code] ?? code
}

export function options(table: string): { value: string; label: string }[] {
  return Object.entries(labels.tables[table] ?? {}).map(([value, text]) => ({ value, label: text }))
}
