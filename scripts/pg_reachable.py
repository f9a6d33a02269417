"""Exit 0 when the test PostgreSQL server answers (used by `make test` outside CI)."""

import os
import sys

import psycopg

url = os.environ.get("YIJING_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
try:
    psycopg.connect(url, connect_timeout=2).close()
except psycopg.Error:
    sys.exit(1)
