//! Window attribution: a cumulative reading at t closes the interval (t_prev, t]; its delta
//! belongs to the windows that interval covers, split by time in exact micro parts. Instants are
//! written by hand in UTC, never computed by the code under test.

mod common;

use common::*;
use ecogate::accounting::ledger::Entity;
use ecogate::accounting::metric::{Metric, Sums};
use ecogate::accounting::window::{next_window_start_ms, LocalTime, WindowKind};
use ecogate::pipeline::Pipeline;
use std::sync::Arc;

fn zone(tz: &str) -> Arc<ecogate::config::Config> {
    config(&FACTORY.replace(
        "name = \"Test Park\"",
        &format!("name = \"Test Park\"\ntimezone = \"{tz}\""),
    ))
}

fn sums(p: &Pipeline, window: WindowKind, entity: Entity, from: &str, to: &str) -> Sums {
    p.store()
        .sums(p.accountant(), window, entity, ts(from), ts(to))
        .unwrap()
}

fn grid(p: &Pipeline, window: WindowKind, from: &str, to: &str) -> f64 {
    sums(p, window, Entity::Meter(0), from, to).get(Metric::GridImportKwh)
}

fn import(kwh: f64, at: &str) -> ecogate::reading::Reading {
    reading("grid", "import", kwh, "kWh", at)
}

#[test]
fn daily_readings_at_midnight_land_on_the_day_they_close() {
    // Shanghai (UTC+8): local midnight of 1 March 2024 is 2024-02-29T16:00Z.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&zone("Asia/Shanghai"), &store_path(&dir));
    p.ingest(&[
        import(1_000.0, "2024-02-29T16:00:00Z"), // 1 March 00:00 local: baseline
        import(1_100.0, "2024-03-01T16:00:00Z"), // 2 March 00:00: closes 1 March, 100 kWh
        import(1_300.0, "2024-03-02T16:00:00Z"), // 3 March 00:00: closes 2 March, 200 kWh
    ])
    .unwrap();
    let day = WindowKind::Day;
    assert_eq!(
        grid(&p, day, "2024-02-29T16:00:00Z", "2024-03-01T16:00:00Z"),
        100.0
    );
    assert_eq!(
        grid(&p, day, "2024-03-01T16:00:00Z", "2024-03-02T16:00:00Z"),
        200.0
    );
    assert_eq!(
        grid(&p, day, "2024-03-02T16:00:00Z", "2024-03-03T16:00:00Z"),
        0.0
    );
}

#[test]
fn a_firm_day_of_quarter_hour_readings_holds_all_of_its_energy() {
    // 97 readings from 00:00 to 24:00 local on 10 June 2024 (Shanghai), 15 minutes apart;
    // reading k adds k x 0.25 kWh. The day holds sum_{k=1..96} k x 0.25 = 0.25 x 4,656 =
    // 1,164 kWh, all of it; the next day nothing; each quarter hour exactly its own delta.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&zone("Asia/Shanghai"), &store_path(&dir));
    let start = ts("2024-06-09T16:00:00Z");
    let mut kwh = 5_000.0;
    let mut readings = Vec::new();
    for k in 0..=96i64 {
        kwh += k as f64 * 0.25;
        let mut r = import(kwh, "2024-06-09T16:00:00Z");
        r.ts_ms = start + k * 900_000;
        readings.push(r);
    }
    p.ingest(&readings).unwrap();
    let day = WindowKind::Day;
    assert_eq!(
        grid(&p, day, "2024-06-09T16:00:00Z", "2024-06-10T16:00:00Z"),
        1_164.0
    );
    assert_eq!(
        grid(&p, day, "2024-06-10T16:00:00Z", "2024-06-11T16:00:00Z"),
        0.0
    );
    // 09:00-09:15 local (01:00-01:15Z) is closed by reading 37: 9.25 kWh.
    assert_eq!(
        grid(
            &p,
            WindowKind::QuarterHour,
            "2024-06-10T01:00:00Z",
            "2024-06-10T01:15:00Z"
        ),
        9.25
    );
}

#[test]
fn a_delta_across_midnight_is_split_by_time() {
    // 23:50 -> 00:05 local (15:50Z -> 16:05Z) with 15 kWh: 10 minutes (10 kWh) belong to
    // 1 June, 5 minutes (5 kWh) to 2 June.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&zone("Asia/Shanghai"), &store_path(&dir));
    p.ingest(&[
        import(100.0, "2024-06-01T15:50:00Z"),
        import(115.0, "2024-06-01T16:05:00Z"),
    ])
    .unwrap();
    let day = WindowKind::Day;
    assert_eq!(
        grid(&p, day, "2024-05-31T16:00:00Z", "2024-06-01T16:00:00Z"),
        10.0
    );
    assert_eq!(
        grid(&p, day, "2024-06-01T16:00:00Z", "2024-06-02T16:00:00Z"),
        5.0
    );
    // CO2 follows its energy: 15 kWh x 0.5366 = 8.049 kg, 5.366 before midnight.
    let before = sums(
        &p,
        day,
        Entity::Firm(0),
        "2024-05-31T16:00:00Z",
        "2024-06-01T16:00:00Z",
    );
    assert_eq!(before.get(Metric::Co2Scope2LocationKg), 5.366);
}

#[test]
fn deltas_across_month_and_year_ends_are_split() {
    // 31 December 2024 23:45 -> 1 January 2025 00:15 local (15:45Z -> 16:15Z), 30 kWh:
    // 15 kWh in December and 2024, 15 kWh in January and 2025. Then 31 January 23:30 ->
    // 1 February 00:30 (15:30Z -> 16:30Z), 60 kWh: 30 and 30.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&zone("Asia/Shanghai"), &store_path(&dir));
    p.ingest(&[
        import(1_000.0, "2024-12-31T15:45:00Z"),
        import(1_030.0, "2024-12-31T16:15:00Z"),
        import(1_030.0, "2025-01-31T15:30:00Z"),
        import(1_090.0, "2025-01-31T16:30:00Z"),
    ])
    .unwrap();
    let (year, month) = (WindowKind::Year, WindowKind::Month);
    assert_eq!(
        grid(&p, year, "2023-12-31T16:00:00Z", "2024-12-31T16:00:00Z"),
        15.0
    );
    assert_eq!(
        grid(&p, year, "2024-12-31T16:00:00Z", "2025-12-31T16:00:00Z"),
        75.0
    );
    assert_eq!(
        grid(&p, month, "2024-11-30T16:00:00Z", "2024-12-31T16:00:00Z"),
        15.0
    );
    assert_eq!(
        grid(&p, month, "2024-12-31T16:00:00Z", "2025-01-31T16:00:00Z"),
        45.0
    );
    assert_eq!(
        grid(&p, month, "2025-01-31T16:00:00Z", "2025-02-28T16:00:00Z"),
        30.0
    );
}

#[test]
fn a_gap_of_three_days_is_split_over_the_days() {
    // 1 March 12:00 -> 4 March 12:00 local, 720 kWh over 72 hours (10 kWh/h): 120 kWh on
    // 1 March, 240 on 2 and 3 March, 120 on 4 March.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&zone("Asia/Shanghai"), &store_path(&dir));
    p.ingest(&[
        import(2_000.0, "2024-03-01T04:00:00Z"),
        import(2_720.0, "2024-03-04T04:00:00Z"),
    ])
    .unwrap();
    let day = WindowKind::Day;
    let days = [
        ("2024-02-29T16:00:00Z", "2024-03-01T16:00:00Z", 120.0),
        ("2024-03-01T16:00:00Z", "2024-03-02T16:00:00Z", 240.0),
        ("2024-03-02T16:00:00Z", "2024-03-03T16:00:00Z", 240.0),
        ("2024-03-03T16:00:00Z", "2024-03-04T16:00:00Z", 120.0),
    ];
    for (from, to, kwh) in days {
        assert_eq!(grid(&p, day, from, to), kwh, "{from}");
    }
}

#[test]
fn berlin_dst_days_hold_23_and_25_hours() {
    // Readings at local midnight around both 2024 changes, 10 kWh an hour throughout.
    // Spring: 31 March has 23 hours (230 kWh); autumn: 27 October has 25 (250 kWh).
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&zone("Europe/Berlin"), &store_path(&dir));
    p.ingest(&[
        import(10_000.0, "2024-03-29T23:00:00Z"), // 30 March 00:00 CET
        import(10_240.0, "2024-03-30T23:00:00Z"), // 31 March 00:00 CET
        import(10_470.0, "2024-03-31T22:00:00Z"), // 1 April 00:00 CEST
        import(20_000.0, "2024-10-25T22:00:00Z"), // 26 October 00:00 CEST
        import(20_240.0, "2024-10-26T22:00:00Z"), // 27 October 00:00 CEST
        import(20_490.0, "2024-10-27T23:00:00Z"), // 28 October 00:00 CET
    ])
    .unwrap();
    let day = WindowKind::Day;
    assert_eq!(
        grid(&p, day, "2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"),
        230.0
    );
    assert_eq!(
        grid(&p, day, "2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z"),
        250.0
    );
    // The rate between 20,000 and 20,240 (a 24-hour day) was steady: the hours of 27 October
    // are 25 windows of 10 kWh, the repeated 02:00 hour two of them.
    let hours = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Hour,
            Entity::Meter(0),
            ts("2024-10-26T22:00:00Z"),
            ts("2024-10-27T23:00:00Z"),
        )
        .unwrap();
    assert_eq!(hours.get(Metric::GridImportKwh), 250.0);
    assert_eq!(
        grid(
            &p,
            WindowKind::Hour,
            "2024-10-27T00:00:00Z",
            "2024-10-27T01:00:00Z"
        ),
        10.0
    );
    assert_eq!(
        grid(
            &p,
            WindowKind::Hour,
            "2024-10-27T01:00:00Z",
            "2024-10-27T02:00:00Z"
        ),
        10.0
    );
}

#[test]
fn minute_windows_add_up_to_hours_days_and_months_exactly() {
    // Irregular readings (7 s to 97 min apart) over two days around a month end in Berlin;
    // odd deltas so that every split rounds. Sums are compared in micro units, exactly.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&zone("Europe/Berlin"), &store_path(&dir));
    let mut t = ts("2024-04-29T22:00:00Z");
    let end = ts("2024-05-01T22:00:00Z");
    let mut kwh = 3_000.0;
    let mut readings = Vec::new();
    let mut k = 0i64;
    while t < end {
        let mut r = import(kwh, "2024-04-29T22:00:00Z");
        r.ts_ms = t;
        readings.push(r);
        k += 1;
        t += 7_000 + (k * 7_919 % 97) * 60_000 + k % 13 * 1_111;
        kwh += 0.333_337 * (k % 11 + 1) as f64;
    }
    p.ingest(&readings).unwrap();
    let all = |w: WindowKind| {
        p.store()
            .sums(p.accountant(), w, Entity::Meter(0), 0, i64::MAX)
            .unwrap()
    };
    let minutes = all(WindowKind::Minute);
    assert!(minutes.get(Metric::GridImportKwh) > 100.0);
    assert_eq!(minutes, all(WindowKind::QuarterHour));
    assert_eq!(minutes, all(WindowKind::Hour));
    assert_eq!(minutes, all(WindowKind::Day));
    assert_eq!(minutes, all(WindowKind::Month));
    assert_eq!(minutes, all(WindowKind::Year));
    // And per day: the minutes of 30 April (local) equal the day.
    let (from, to) = ("2024-04-29T22:00:00Z", "2024-04-30T22:00:00Z");
    assert_eq!(
        sums(&p, WindowKind::Minute, Entity::Meter(0), from, to),
        sums(&p, WindowKind::Day, Entity::Meter(0), from, to)
    );
}

#[test]
fn an_integrated_gauge_splits_its_trapezoid_at_the_boundary() {
    // A kW gauge on grid import: 0 kW at 23:57:30 and 60 kW at 00:02:30 local (within the
    // 300 s gauge gap). The trapezoid is 30 kW x 5/60 h = 2.5 kWh; up to midnight the rate
    // climbs 0 -> 30 kW over 2.5 min: 15 kW x 2.5/60 h = 0.625 kWh; after midnight 30 -> 60 kW:
    // 45 kW x 2.5/60 h = 1.875 kWh.
    let text = FACTORY.replace(
        "[[meters]]\nid = \"pv\"",
        "[[meters]]\nid = \"load\"\nsite = \"s1\"\nchannels = [{ id = \"p\", carrier = \"grid_import\", kind = \"gauge\", unit = \"kW\", integrate = true }]\n\n[[meters]]\nid = \"pv\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&config(&text), &store_path(&dir));
    p.ingest(&[
        reading("load", "p", 0.0, "kW", "2024-06-01T15:57:30Z"),
        reading("load", "p", 60.0, "kW", "2024-06-01T16:02:30Z"),
    ])
    .unwrap();
    let load = |from: &str, to: &str| {
        sums(&p, WindowKind::Day, Entity::Meter(1), from, to).get(Metric::GridImportKwh)
    };
    assert_eq!(load("2024-05-31T16:00:00Z", "2024-06-01T16:00:00Z"), 0.625);
    assert_eq!(load("2024-06-01T16:00:00Z", "2024-06-02T16:00:00Z"), 1.875);
}

#[test]
fn a_signed_grid_gauge_never_makes_negative_energy() {
    // Without negative_carrier: -120 kW is refused (counted as negative_value).
    let gauge = |extra: &str| {
        FACTORY.replace(
            "[[meters]]\nid = \"pv\"",
            &format!("[[meters]]\nid = \"conn\"\nsite = \"s1\"\nchannels = [{{ id = \"p\", carrier = \"grid_import\", kind = \"gauge\", unit = \"kW\", integrate = true{extra} }}]\n\n[[meters]]\nid = \"pv\""),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&config(&gauge("")), &store_path(&dir));
    let b = p
        .ingest(&[
            reading("conn", "p", 60.0, "kW", "2024-06-01T00:00:00Z"),
            reading("conn", "p", -120.0, "kW", "2024-06-01T00:01:00Z"),
        ])
        .unwrap();
    assert_eq!(b.rejections.len(), 1);
    assert_eq!(b.rejections[0].reason.name(), "negative_value");

    // With negative_carrier = grid_export: 60 kW -> -120 kW over 3 minutes crosses zero a
    // third of the way (1 min): import 30 kW x 1/60 h = 0.5 kWh, export 60 kW x 2/60 h =
    // 2 kWh. No negative energy, no negative CO2: Scope 2 = 0.5 x 0.5366 = 0.2683 kg.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(
        &config(&gauge(", negative_carrier = \"grid_export\"")),
        &store_path(&dir),
    );
    p.ingest(&[
        reading("conn", "p", 60.0, "kW", "2024-06-01T00:00:00Z"),
        reading("conn", "p", -120.0, "kW", "2024-06-01T00:03:00Z"),
    ])
    .unwrap();
    let s = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Year,
            Entity::Meter(1),
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(s.get(Metric::GridImportKwh), 0.5);
    assert_eq!(s.get(Metric::GridExportKwh), 2.0);
    assert_eq!(s.get(Metric::Co2Scope2LocationKg), 0.2683);
}

#[test]
fn calendar_windows_at_hand_written_instants() {
    let sh: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let be: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let start =
        |at: &str, w: WindowKind, tz| LocalTime::new(ts(at), tz).unwrap().window_start_ms(w, tz);
    // Local midnight: 00:00:00 Shanghai is 16:00Z the day before; 23:59:59.999 is still the
    // earlier day.
    assert_eq!(
        start("2024-03-01T16:00:00Z", WindowKind::Day, sh),
        ts("2024-03-01T16:00:00Z")
    );
    assert_eq!(
        start("2024-03-01T15:59:59.999Z", WindowKind::Day, sh),
        ts("2024-02-29T16:00:00Z")
    );
    // Month end of a leap February, and 31 December -> 1 January.
    assert_eq!(
        start("2024-02-29T15:59:59Z", WindowKind::Month, sh),
        ts("2024-01-31T16:00:00Z")
    );
    assert_eq!(
        start("2024-12-31T16:00:00Z", WindowKind::Year, sh),
        ts("2024-12-31T16:00:00Z")
    );
    assert_eq!(
        start("2024-12-31T15:59:59Z", WindowKind::Year, sh),
        ts("2023-12-31T16:00:00Z")
    );
    // Berlin's gap: 31 March 2024 02:00 CET jumps to 03:00 CEST (01:00Z). The day starts at
    // 23:00Z on the 30th and is 23 hours long; 03:30 CEST is in the hour starting 01:00Z.
    assert_eq!(
        start("2024-03-31T01:30:00Z", WindowKind::Day, be),
        ts("2024-03-30T23:00:00Z")
    );
    assert_eq!(
        start("2024-03-31T01:30:00Z", WindowKind::Hour, be),
        ts("2024-03-31T01:00:00Z")
    );
    assert_eq!(
        next_window_start_ms(WindowKind::Day, ts("2024-03-30T23:00:00Z"), be),
        ts("2024-03-31T22:00:00Z")
    );
    // The repeated hour: 27 October 02:30 happens at 00:30Z (CEST) and 01:30Z (CET), two hour
    // windows; the day runs 25 hours.
    assert_eq!(
        start("2024-10-27T00:30:00Z", WindowKind::Hour, be),
        ts("2024-10-27T00:00:00Z")
    );
    assert_eq!(
        start("2024-10-27T01:30:00Z", WindowKind::Hour, be),
        ts("2024-10-27T01:00:00Z")
    );
    assert_eq!(
        next_window_start_ms(WindowKind::Day, ts("2024-10-26T22:00:00Z"), be),
        ts("2024-10-27T23:00:00Z")
    );
    // A year is its months, end to end: 12 steps of next_window_start from 1 January 2024
    // land on 1 January 2025 (Shanghai), and 366 day steps do too.
    let mut t = ts("2023-12-31T16:00:00Z");
    for _ in 0..12 {
        t = next_window_start_ms(WindowKind::Month, t, sh);
    }
    assert_eq!(t, ts("2024-12-31T16:00:00Z"));
    let mut d = ts("2023-12-31T16:00:00Z");
    for _ in 0..366 {
        d = next_window_start_ms(WindowKind::Day, d, sh);
    }
    assert_eq!(d, ts("2024-12-31T16:00:00Z"));
}

#[test]
fn a_ten_day_gap_is_one_span_read_into_every_window() {
    // Shanghai: 1 March 12:00 -> 11 March 12:00 local, 2,400 kWh over 240 h = 10 kWh an hour,
    // 1/6 kWh a minute. The delta is kept as one span (no window rows), and every window reads
    // its part of it: 10 kWh an hour, 240 kWh a whole day, 120 kWh on 1 and 11 March.
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&zone("Asia/Shanghai"), &store_path(&dir));
    p.ingest(&[
        import(2_000.0, "2024-03-01T04:00:00Z"),
        import(4_400.0, "2024-03-11T04:00:00Z"),
    ])
    .unwrap();
    let rows: i64 = rusqlite::Connection::open(store_path(&dir))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM aggregates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "the gap is one span, not window rows");
    let (hour, day) = (WindowKind::Hour, WindowKind::Day);
    assert_eq!(
        grid(&p, hour, "2024-03-05T02:00:00Z", "2024-03-05T03:00:00Z"),
        10.0
    );
    // 10:00 to 14:00 local on 5 March: four hours, 40 kWh.
    assert_eq!(
        grid(&p, hour, "2024-03-05T02:00:00Z", "2024-03-05T06:00:00Z"),
        40.0
    );
    assert_eq!(
        grid(&p, day, "2024-02-29T16:00:00Z", "2024-03-01T16:00:00Z"),
        120.0
    );
    assert_eq!(
        grid(&p, day, "2024-03-04T16:00:00Z", "2024-03-05T16:00:00Z"),
        240.0
    );
    assert_eq!(
        grid(&p, day, "2024-03-10T16:00:00Z", "2024-03-11T16:00:00Z"),
        120.0
    );
    // One minute holds 1/6 kWh rounded to the micro unit; a whole hour of them, 10 kWh exactly.
    let minute = grid(
        &p,
        WindowKind::Minute,
        "2024-03-05T02:07:00Z",
        "2024-03-05T02:08:00Z",
    );
    assert!((minute - 1.0 / 6.0).abs() <= 1e-6, "{minute}");
    assert_eq!(
        grid(
            &p,
            WindowKind::Minute,
            "2024-03-05T02:00:00Z",
            "2024-03-05T03:00:00Z"
        ),
        10.0
    );
    // Every kind adds up to the delta, at every level.
    for w in WindowKind::ALL.iter().copied() {
        for e in [
            Entity::Meter(0),
            Entity::Site(0),
            Entity::Firm(0),
            Entity::Park,
        ] {
            let all = p.store().sums(p.accountant(), w, e, 0, i64::MAX).unwrap();
            assert_eq!(all.get(Metric::GridImportKwh), 2_400.0, "{w} {e:?}");
        }
    }
    // Window by window, each kind's parts are those of an exact split at its boundaries (the
    // cumulative share of 2,400 kWh at each boundary, rounded to the micro unit).
    let tz = p.accountant().config().park.timezone;
    let (t0, t1) = (ts("2024-03-01T04:00:00Z"), ts("2024-03-11T04:00:00Z"));
    let cumulative = |x: i64| -> i64 {
        let x = x.clamp(t0, t1);
        let (tau, span) = ((x - t0) as i128, (t1 - t0) as i128);
        ((2_400_000_000i128 * tau * 2 + span).div_euclid(2 * span)) as i64
    };
    for w in [WindowKind::QuarterHour, WindowKind::Hour, WindowKind::Day] {
        let mut start = LocalTime::new(t0, tz).unwrap().window_start_ms(w, tz);
        while start < t1 {
            let end = next_window_start_ms(w, start, tz);
            let got = p
                .store()
                .sums(p.accountant(), w, Entity::Firm(0), start, start + 1)
                .unwrap()
                .micro(Metric::GridImportKwh);
            assert_eq!(got, cumulative(end) - cumulative(start), "{w} at {start}");
            start = end;
        }
    }
}
