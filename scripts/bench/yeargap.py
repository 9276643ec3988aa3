#!/usr/bin/env python3
"""Writes the year-gap case: a small park (8 firms, 14 meters) read once on 1 January, once on
1 July and once on the next 1 January, 42 readings in all. Usage: yeargap.py DIR; writes
DIR/yeargap.toml (store DIR/yeargap.db) and DIR/yeargap.csv.

Hand-computed totals: meter k (0-based) rises by 1,000 x (k + 1) kWh in each half year, so the
park's grid import over the year is 2 x 1,000 x (1 + ... + 14) = 210,000 kWh."""
import os
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
firms = [f"firm{i}" for i in range(8)]
# Six firms with two meters, two with one: 14 meters.
meters = []
for i, firm in enumerate(firms):
    for j in range(2 if i < 6 else 1):
        meters.append((f"m{i}-{j}", firm))
cfg = ['[park]', 'name = "Year Gap Park"', 'timezone = "Asia/Shanghai"',
       'grid_region = "national"', 'grid_factor_year = 2023', '',
       '[store]', f'path = "{os.path.join(out, "yeargap.db")}"', '']
for firm in firms:
    cfg += ['[[firms]]', f'id = "{firm}"', f'name = "{firm}"', 'land_mu = 50', '',
            '[[sites]]', f'id = "{firm}-site"', f'firm = "{firm}"', 'kind = "factory"', '']
for meter, firm in meters:
    cfg += ['[[meters]]', f'id = "{meter}"', f'site = "{firm}-site"',
            'channels = [{ id = "import", carrier = "grid_import", kind = "counter", '
            'unit = "kWh", max_rate_per_hour = 100000 }]', '']
with open(os.path.join(out, "yeargap.toml"), "w") as f:
    f.write("\n".join(cfg))
with open(os.path.join(out, "yeargap.csv"), "w") as f:
    f.write("timestamp,meter,channel,value,unit\n")
    for step, stamp in enumerate(["2025-01-01 00:00:00", "2025-07-01 00:00:00",
                                  "2026-01-01 00:00:00"]):
        for k, (meter, _) in enumerate(meters):
            f.write(f"{stamp},{meter},import,{10_000 + step * 1_000 * (k + 1)},kWh\n")
