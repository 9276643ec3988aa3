#!/usr/bin/env python3
"""Writes a replay input of N rows: 1,000 meters (10 firms of 100) with one grid-import reading
a minute each, grouped by meter as meter exports usually are (so replay must sort it).
Usage: replay_rows.py DIR N; writes DIR/replay.toml (store DIR/replay.db) and DIR/replay-N.csv.
Each meter rises by exactly 1 kWh a minute: the park's total is (N / 1,000 - 1) x 1,000 kWh."""
import os
import sys

out, n = sys.argv[1], int(sys.argv[2])
meters = 1_000
minutes = n // meters
os.makedirs(out, exist_ok=True)
cfg = ['[park]', 'name = "Replay Park"', 'timezone = "Asia/Shanghai"',
       'grid_region = "national"', 'grid_factor_year = 2023', '',
       '[store]', f'path = "{os.path.join(out, "replay.db")}"', '']
for f in range(10):
    cfg += ['[[firms]]', f'id = "f{f}"', f'name = "f{f}"', 'land_mu = 50', '',
            '[[sites]]', f'id = "s{f}"', f'firm = "f{f}"', 'kind = "factory"', '']
for m in range(meters):
    cfg += ['[[meters]]', f'id = "m{m}"', f'site = "s{m % 10}"',
            'channels = [{ id = "import", carrier = "grid_import", kind = "counter", '
            'unit = "kWh", max_rate_per_hour = 100000 }]', '']
with open(os.path.join(out, "replay.toml"), "w") as f:
    f.write("\n".join(cfg))
start = 1_767_196_800  # 2026-01-01 00:00 +08:00, in epoch seconds
with open(os.path.join(out, f"replay-{n}.csv"), "w") as f:
    f.write("timestamp,meter,channel,value,unit\n")
    for m in range(meters):
        name = f"m{m}"
        f.write("".join(f"{start + k * 60},{name},import,{1000 + k},kWh\n" for k in range(minutes)))
