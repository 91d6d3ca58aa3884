#!/usr/bin/env python3
"""Reads a snapshot tree's Parquet parts with DuckDB and prints every row.

usage: duckdb_counts.py ROOT
Prints JSON lines {"dt","hour","content_id","views"} for every row of every
part under ROOT/titles/dt=*/hour=*/, read through DuckDB's Parquet reader
with Hive partitioning, so tests can check the files with an independent
reader.
"""
import json
import sys

import duckdb

root = sys.argv[1]
con = duckdb.connect()
rows = con.execute(
    "SELECT CAST(dt AS VARCHAR), CAST(hour AS VARCHAR), content_id, views "
    "FROM read_parquet(?, hive_partitioning = true, hive_types_autocast = false) "
    "ORDER BY 1, 2, 3",
    [f"{root}/titles/*/*/*.parquet"],
).fetchall()
for dt, hour, content_id, views in rows:
    print(json.dumps({"dt": dt, "hour": hour, "content_id": content_id, "views": views}))
