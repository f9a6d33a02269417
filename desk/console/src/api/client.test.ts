import { describe, expect, it } from 'vitest'
import { errorOf } from './client'

describe('errors', () => {
  it('shows the API message with the field messages', () => {
    const e = errorOf(422, { error: { code: 'invalid_input', message: '提交的内容有误，请按提示修改', fields: { json: { reason: ['请填写查看事由（2–200 字）'] } } } })
    expect(e.message).toBe('提交的内容有误，请按提示修改：请填写查看事由（2–200 字）')
    expect(e.code).toBe('invalid_input')
  })
  it('survives a body that is not the error shape', () => {
    expect(errorOf(502, null).message).toBe('请求失败（502）')
  })
})
