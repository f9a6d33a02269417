"""Load benchmarks: the real app under gunicorn, measured with wrk against a bare Flask baseline."""
