"""The baseline: a bare Flask app that does nothing but return a constant JSON body.

It runs under gunicorn with exactly the settings the real app gets, so the ratio
``scenario req/s ÷ baseline req/s`` measured in the same run says how much of the
hardware's ceiling (see docs/performance.md) an endpoint keeps.
"""

from flask import Flask, jsonify

app = Flask(__name__)

CONSTANT = {"ok": True, "service": "bench-baseline", "version": 1}


@app.get("/const")
def constant():
    return jsonify(CONSTANT)


@app.get("/healthz")
def healthz():
    return jsonify({"ok": True})
