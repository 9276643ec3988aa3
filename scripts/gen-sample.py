#!/usr/bin/env python3
"""Writes tests/data/sample.csv: two days of 15-minute meter readings for the park in
config/ecogate.example.toml. Deterministic (fixed seed), so the committed file can be
regenerated and compared. It includes a gas-meter rollover at 100,000 Nm3 and one glitched
reading (a spike that the next reading shows to be false), which ecogate must quarantine."""
import math
import random
from datetime import datetime, timedelta, timezone

random.seed(20261127)
tz = timezone(timedelta(hours=8))
start = datetime(2026, 11, 1, 0, 0, tzinfo=tz)
steps = 2 * 24 * 4  # two days, every 15 minutes, plus the closing reading

state = {
    ("hd-main", "import", "kWh"): 1_234_567.89,
    ("hd-main", "export", "kWh"): 10_200.5,
    ("hd-pv", "generation", "kWh"): 402_118.2,
    ("hd-gas", "volume", "Nm3"): 99_640.0,
    ("hd-line1", "units", "pcs"): 88_000,
    ("ln-grid", "import", "kWh"): 51_022.0,
    ("ln-pv", "generation", "Wh"): 20_500_000,
    ("ln-chargers", "delivered", "kWh"): 44_870.3,
    ("ln-chargers", "sessions", "session"): 3_120,
    ("qh-grid", "import", "MWh"): 812.345,
    ("qh-pv", "generation", "kWh"): 61_200.0,
    ("qh-h2", "produced", "kg"): 9_800.0,
    ("qh-h2", "dispensed", "kg"): 9_100.0,
}

def sun(t):
    h = t.hour + t.minute / 60
    return max(0.0, math.sin((h - 6) / 12 * math.pi)) if 6 <= h <= 18 else 0.0

rows = []
for i in range(steps + 1):
    t = start + timedelta(minutes=15 * i)
    if i > 0:
        s = sun(t)
        work = 1.0 if 8 <= t.hour < 20 else 0.35
        pv = 250 * s * random.uniform(0.85, 1.0)               # kWh per 15 min, 1.2 MWp
        load = 600 * work * random.uniform(0.9, 1.1)            # kWh per 15 min
        state[("hd-pv", "generation", "kWh")] += pv
        state[("hd-main", "import", "kWh")] += max(0.0, load - pv)
        state[("hd-main", "export", "kWh")] += max(0.0, pv - load)
        state[("hd-gas", "volume", "Nm3")] += 40 * work * random.uniform(0.8, 1.2)
        if state[("hd-gas", "volume", "Nm3")] >= 100_000:
            state[("hd-gas", "volume", "Nm3")] -= 100_000
        state[("hd-line1", "units", "pcs")] += round(30 * work * random.uniform(0.8, 1.2))
        ev = 180 * (1.0 if 7 <= t.hour < 23 else 0.3) * random.uniform(0.6, 1.2)
        ev_pv = 40 * s * random.uniform(0.85, 1.0)
        state[("ln-chargers", "delivered", "kWh")] += ev
        state[("ln-chargers", "sessions", "session")] += random.choice([0, 1, 1, 2, 3]) if ev > 60 else random.choice([0, 1])
        state[("ln-pv", "generation", "Wh")] += round(ev_pv * 1000)
        state[("ln-grid", "import", "kWh")] += max(0.0, ev * 1.04 - ev_pv)
        h2_kwh = 450 * random.uniform(0.95, 1.05)               # 1.8 MW electrolyser
        h2_pv = 150 * s * random.uniform(0.85, 1.0)
        state[("qh-pv", "generation", "kWh")] += h2_pv
        state[("qh-grid", "import", "MWh")] += (h2_kwh - h2_pv) / 1000
        state[("qh-h2", "produced", "kg")] += h2_kwh / 55.0
        state[("qh-h2", "dispensed", "kg")] += h2_kwh / 55.0 * random.uniform(0.7, 1.0)
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    for (meter, channel, unit), v in state.items():
        if meter == "hd-line1" or unit in ("session", "Wh"):
            text = str(int(v))
        else:
            text = f"{v:.3f}"
        rows.append((stamp, meter, channel, text, unit))
    if i == 100:
        # A corrupted register read five minutes later: a spike of ~1,000,000 kWh.
        glitch = (t + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
        rows.append((glitch, "hd-main", "import", f"{state[('hd-main', 'import', 'kWh')] + 1_000_000:.3f}", "kWh"))

with open("tests/data/sample.csv", "w") as f:
    f.write("timestamp,meter,channel,value,unit\n")
    for r in rows:
        f.write(",".join(r) + "\n")
print(f"wrote {len(rows)} rows")
