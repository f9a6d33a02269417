"""Demo data for development, screenshots and benchmarks (not real operational data)."""
