#!/usr/bin/env python3
"""Reads one model table of a snapshot tree with DuckDB and prints its rows.

usage: duckdb_table.py ROOT TABLE
Prints JSON lines {"dt","hour","content_id","kind","views","views_24h"} for
every row of every part under ROOT/TABLE/dt=*/hour=*/, then one line
{"row_groups": N}: the most row groups in any one part. Tests compare it with
the project's own reader, so the parts are checked by an independent one.
"""
import json
import sys

import duckdb

root, table = sys.argv[1], sys.argv[2]
parts = f"{root}/{table}/*/*/*.parquet"
con = duckdb.connect()
rows = con.execute(
    "SELECT CAST(dt AS VARCHAR), CAST(hour AS VARCHAR), content_id, kind, views, views_24h "
    "FROM read_parquet(?, hive_partitioning = true, hive_types_autocast = false) "
    "ORDER BY 1, 2, 3",
    [parts],
).fetchall()
for dt, hour, content_id, kind, views, views_24h in rows:
    print(json.dumps({"dt": dt, "hour": hour, "content_id": content_id, "kind": kind,
                      "views": views, "views_24h": views_24h}))
groups = con.execute(
    "SELECT max(n) FROM (SELECT count(DISTINCT row_group_id) AS n "
    "FROM parquet_metadata(?) GROUP BY file_name)",
    [parts],
).fetchone()[0]
print(json.dumps({"row_groups": groups}))
