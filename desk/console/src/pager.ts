// Cursor paging for every list: the first page, then "加载更多" until next_cursor is null.
import { ref, shallowRef, type Ref } from 'vue'
import { ApiError } from './api/client'

export interface PageOf<T> {
  items?: T[]
  next_cursor?: string | null
}

export function usePager<T>(load: (cursor: string | undefined) => Promise<PageOf<T>>) {
  const items = shallowRef<T[]>([]) as Ref<T[]>
  const next = ref<string | null>(null)
  const loading = ref(false)
  const error = ref('')
  let generation = 0

  async function fetchPage(cursor?: string): Promise<void> {
    const mine = ++generation
    loading.value = true
    error.value = ''
    try {
      const page = await load(cursor)
      if (mine !== generation) return
      items.value = cursor ? [...items.value, ...(page.items ?? [])] : (page.items ?? [])
      next.value = page.next_cursor ?? null
    } catch (e) {
      if (mine === generation) error.value = e instanceof ApiError ? e.message : String(e)
    } finally {
      if (mine === generation) loading.value = false
    }
  }

  return {
    items,
    next,
    loading,
    error,
    reload: () => fetchPage(undefined),
    more: () => (next.value ? fetchPage(next.value) : Promise.resolve()),
  }
}
