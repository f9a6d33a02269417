// A short two-tone alarm made with Web Audio (no sound file, nothing fetched).
export function playAlarm(): boolean {
  const Ctx = window.AudioContext ?? (window as unknown as { webkitAudioContext?: typeof AudioContext }).webkitAudioContext
  if (!Ctx) return false
  try {
    const ctx = new Ctx()
    const gain = ctx.createGain()
    gain.gain.value = 0.15
    gain.connect(ctx.destination)
    ;[880, 660, 880].forEach((freq, i) => {
      const osc = ctx.createOscillator()
      osc.frequency.value = freq
      osc.connect(gain)
      osc.start(ctx.currentTime + i * 0.22)
      osc.stop(ctx.currentTime + i * 0.22 + 0.2)
    })
    window.setTimeout(() => void ctx.close(), 1200)
    return true
  } catch {
    return false
  }
}
