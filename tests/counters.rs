//! Counter cases through the whole pipeline and store: rollover, reset, replacement,
//! out-of-order, duplicate, spike, and a restart between two readings.

mod common;

use common::*;
use ecogate::accounting::ledger::{Entity, EventKind};
use ecogate::accounting::metric::Metric;
use ecogate::accounting::window::WindowKind;
use ecogate::pipeline::Pipeline;

fn import_kwh(p: &Pipeline) -> f64 {
    p.store()
        .sums(
            p.accountant(),
            WindowKind::Year,
            Entity::Meter(0),
            0,
            i64::MAX,
        )
        .unwrap()
        .get(Metric::GridImportKwh)
}

#[test]
fn rollover_reset_replacement_and_spike_in_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let mut p = pipeline(&cfg, &store_path(&dir));
    // grid.import: rollover at 100,000 kWh, at most 5,000 kWh/h.
    let stream = [
        (99_900.0, "2024-01-01T00:00:00Z"),    // baseline
        (99_950.0, "2024-01-01T00:15:00Z"),    // +50
        (30.0, "2024-01-01T00:30:00Z"),        // rollover: +50 to 100,000, +30 = +80
        (5_000_000.0, "2024-01-01T00:45:00Z"), // spike: quarantined
        (100.0, "2024-01-01T01:00:00Z"),       // back in line with 30: +70, spike discarded
        (2.0, "2024-01-01T01:15:00Z"),         // meter replaced, new one from zero: +2
        (60_000.0, "2024-01-01T01:30:00Z"),    // replaced again by a used meter at 60,000: held
        (60_010.0, "2024-01-01T01:45:00Z"),    // confirms the jump: +10 from 60,000
    ];
    for (kwh, at) in stream {
        p.ingest(&[reading("grid", "import", kwh, "kWh", at)])
            .unwrap();
    }
    // 50 + 80 + 70 + 2 + 10 = 212 kWh.
    assert_eq!(import_kwh(&p), 212.0);
    let m = p.metrics();
    assert_eq!(m.events(EventKind::Rollover), 1);
    assert_eq!(m.events(EventKind::Quarantined), 2);
    assert_eq!(m.events(EventKind::GlitchDiscarded), 1);
    assert_eq!(m.events(EventKind::Reset), 1);
    assert_eq!(m.events(EventKind::Rebased), 1);
    // The audit trail holds the same events.
    assert_eq!(p.store().event_count("quarantined").unwrap(), 2);
    assert_eq!(p.store().event_count("rebased").unwrap(), 1);
}

#[test]
fn duplicates_and_out_of_order_add_nothing_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let mut p = pipeline(&cfg, &store_path(&dir));
    p.ingest(&[
        reading("grid", "import", 1_000.0, "kWh", "2024-01-01T00:00:00Z"),
        reading("grid", "import", 1_010.0, "kWh", "2024-01-01T00:15:00Z"),
        reading("grid", "import", 1_010.0, "kWh", "2024-01-01T00:15:00Z"), // duplicate
        reading("grid", "import", 1_005.0, "kWh", "2024-01-01T00:10:00Z"), // late
        reading("grid", "import", 1_020.0, "kWh", "2024-01-01T00:30:00Z"),
    ])
    .unwrap();
    // A redelivery of the whole batch adds nothing either.
    p.ingest(&[reading(
        "grid",
        "import",
        1_010.0,
        "kWh",
        "2024-01-01T00:15:00Z",
    )])
    .unwrap();
    assert_eq!(import_kwh(&p), 20.0);
    assert_eq!(p.metrics().events(EventKind::Duplicate), 1);
    assert_eq!(p.metrics().events(EventKind::OutOfOrder), 2);
}

#[test]
fn restart_between_two_readings_attributes_the_outage_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let cfg = config(FACTORY);
    {
        let mut p = pipeline(&cfg, &path);
        p.ingest(&[reading(
            "grid",
            "import",
            500.0,
            "kWh",
            "2024-01-01T00:00:00Z",
        )])
        .unwrap();
        p.ingest(&[reading(
            "grid",
            "import",
            510.0,
            "kWh",
            "2024-01-01T00:15:00Z",
        )])
        .unwrap();
    } // the daemon stops; 3 hours pass
    let mut p = pipeline(&cfg, &path);
    // The first reading after restart carries the 3 h of consumption: 510 -> 2,010 = 1,500 kWh,
    // within 5,000 kWh/h x 3 h; attributed at this reading, not lost and not a new baseline.
    let b = p
        .ingest(&[reading(
            "grid",
            "import",
            2_010.0,
            "kWh",
            "2024-01-01T03:15:00Z",
        )])
        .unwrap();
    assert_eq!(b.event_count(EventKind::Baseline), 0);
    assert_eq!(import_kwh(&p), 1_510.0);
    // Restarting again and replaying the same readings counts nothing twice.
    drop(p);
    let mut p = pipeline(&cfg, &path);
    p.ingest(&[
        reading("grid", "import", 500.0, "kWh", "2024-01-01T00:00:00Z"),
        reading("grid", "import", 510.0, "kWh", "2024-01-01T00:15:00Z"),
        reading("grid", "import", 2_010.0, "kWh", "2024-01-01T03:15:00Z"),
    ])
    .unwrap();
    assert_eq!(import_kwh(&p), 1_510.0);
    // The outage's energy covers (00:15, 03:15], 180 minutes, and is spread over them: the
    // 03:00-04:00 hour holds 15 of them (1,500 x 15 / 180 = 125 kWh), the 01:00 hour 60
    // (500 kWh), and the 00:00 hour its 10 kWh plus 45 minutes' worth (375 kWh).
    let hour = |at: &str| {
        p.store()
            .sums(
                p.accountant(),
                WindowKind::Hour,
                Entity::Meter(0),
                ts(at),
                ts(at) + 3_600_000,
            )
            .unwrap()
            .get(Metric::GridImportKwh)
    };
    assert_eq!(hour("2024-01-01T03:00:00Z"), 125.0);
    assert_eq!(hour("2024-01-01T01:00:00Z"), 500.0);
    assert_eq!(hour("2024-01-01T00:00:00Z"), 385.0);
}

#[test]
fn quarantine_pending_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let cfg = config(FACTORY);
    {
        let mut p = pipeline(&cfg, &path);
        p.ingest(&[reading(
            "grid",
            "import",
            40_000.0,
            "kWh",
            "2024-01-01T00:00:00Z",
        )])
        .unwrap();
        // 100 kWh in a minute is 6,000 kWh/h, over the 5,000 limit: quarantined.
        p.ingest(&[reading(
            "grid",
            "import",
            40_100.0,
            "kWh",
            "2024-01-01T00:01:00Z",
        )])
        .unwrap();
        assert_eq!(import_kwh(&p), 0.0);
    }
    let mut p = pipeline(&cfg, &path);
    // After restart the next reading continues the jump: 190 kWh in 2 minutes = 5,700 kWh/h,
    // within 4 x the limit: real consumption over the limit, counted in full.
    p.ingest(&[reading(
        "grid",
        "import",
        40_190.0,
        "kWh",
        "2024-01-01T00:02:00Z",
    )])
    .unwrap();
    assert_eq!(import_kwh(&p), 190.0);
    assert_eq!(p.store().event_count("over_limit").unwrap(), 1);
    // /metrics says by how much: 5,700 / 5,000 = 1.14.
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&p.metrics().registry.gather())
        .unwrap();
    assert!(
        text.contains("ecogate_register_over_limit_ratio{channel=\"import\",meter=\"grid\"} 1.14"),
        "{text}"
    );
    assert!(text.contains("ecogate_register_held{channel=\"import\",meter=\"grid\"} 0"));
}

#[test]
fn a_held_drop_survives_a_restart_and_is_never_rebased_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let cfg = config(FACTORY);
    {
        let mut p = pipeline(&cfg, &path);
        p.ingest(&[
            reading("grid", "import", 40_000.0, "kWh", "2024-01-01T00:00:00Z"),
            // A used meter at 7,000 kWh, not declared: held.
            reading("grid", "import", 7_000.0, "kWh", "2024-01-01T00:01:00Z"),
        ])
        .unwrap();
    }
    let mut p = pipeline(&cfg, &path);
    // 7,005 continues the held value, not the mark: nothing is counted (a redelivered run of
    // old values looks the same). Back above the mark, 40,000 -> 40,010 counts 10 kWh.
    p.ingest(&[
        reading("grid", "import", 7_005.0, "kWh", "2024-01-01T00:02:00Z"),
        reading("grid", "import", 40_010.0, "kWh", "2024-01-01T00:10:00Z"),
    ])
    .unwrap();
    assert_eq!(import_kwh(&p), 10.0);
    assert_eq!(p.store().event_count("held").unwrap(), 1);
    assert_eq!(p.store().event_count("rebased").unwrap(), 0);
    // The held reading is marked as such in the store.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let held: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM readings_by_name WHERE quality = 'held'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(held, 1);
}

#[test]
fn bad_readings_are_refused_by_reason_and_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let mut p = pipeline(&cfg, &store_path(&dir));
    let mut bad_quality = reading("grid", "import", 1_004.0, "kWh", "2024-01-01T00:20:00Z");
    bad_quality.quality = ecogate::reading::Quality::Bad;
    let b = p
        .ingest(&[
            reading("grid", "import", 1_000.0, "kWh", "2024-01-01T00:00:00Z"),
            reading("nope", "import", 1.0, "kWh", "2024-01-01T00:05:00Z"),
            reading("grid", "nope", 1.0, "kWh", "2024-01-01T00:05:00Z"),
            reading("grid", "import", f64::NAN, "kWh", "2024-01-01T00:10:00Z"),
            reading("grid", "import", 1e12, "kWh", "2024-01-01T00:10:00Z"),
            bad_quality,
            reading("grid", "import", 1_008.0, "kWh", "2024-01-01T00:30:00Z"),
        ])
        .unwrap();
    let reasons: Vec<_> = b
        .rejections
        .iter()
        .map(|r| (r.index, r.reason.name()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (1, "unknown_meter"),
            (2, "unknown_channel"),
            (3, "not_finite"),
            (4, "out_of_range"),
            (5, "bad_quality")
        ]
    );
    // The good readings around them are accounted: 1,000 -> 1,008 = 8 kWh.
    assert_eq!(import_kwh(&p), 8.0);
}

#[test]
fn a_reading_from_a_wrong_clock_does_not_stall_its_channel() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let mut p = pipeline(&cfg, &store_path(&dir));
    let now = chrono::Utc::now().timestamp_millis();
    let at = |ms: i64| ecogate::reading::Reading {
        ts_ms: ms,
        ..reading("grid", "import", 0.0, "kWh", "2024-01-01T00:00:00Z")
    };
    let b = p
        .ingest(&[
            ecogate::reading::Reading {
                amount: 100.0,
                ..at(now - 3_600_000)
            },
            // A meter whose clock says next year: refused, so it cannot become the baseline.
            ecogate::reading::Reading {
                amount: 101.0,
                ..at(now + 365 * 86_400_000)
            },
            ecogate::reading::Reading {
                amount: 101.0,
                ..at(-5)
            },
            ecogate::reading::Reading {
                amount: 102.0,
                ..at(now - 1_000)
            },
        ])
        .unwrap();
    let reasons: Vec<_> = b.rejections.iter().map(|r| r.reason.name()).collect();
    assert_eq!(reasons, vec!["future_timestamp", "bad_timestamp"]);
    // 100 -> 102 kWh: the channel kept counting.
    assert_eq!(import_kwh(&p), 2.0);
}

/// The gateway's clock stepped back an hour while a Modbus meter was polled every minute
/// (readings stamped on arrival). Before the fix the reading in flight at the step was refused as
/// an hour in the future and every reading after the step was out of order: 3 of the 8 kWh
/// counted. Now: 100 -> 108 kWh = 8 kWh, the 1 kWh across the step at its reading's instant,
/// with a `clock_step_back` event in the audit trail.
#[test]
fn a_clock_stepped_back_loses_nothing_stamped_on_arrival() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let mut p = pipeline(&cfg, &store_path(&dir));
    let now = chrono::Utc::now().timestamp_millis();
    let hour = 3_600_000;
    let polled = |kwh: f64, ts_ms: i64| ecogate::reading::Reading {
        amount: kwh,
        ts_ms,
        stamped_on_arrival: true,
        ..reading("grid", "import", 0.0, "kWh", "2024-01-01T00:00:00Z")
    };
    // Before the step the clock ran an hour ahead: 100..103 kWh stamped now+1h-4min..now+1h-1min.
    let ahead: Vec<_> = (0..4)
        .map(|k| polled(100.0 + k as f64, now + hour - (4 - k) * 60_000))
        .collect();
    p.ingest(&ahead).unwrap();
    // Stamped just before the step, committed after it: an hour ahead of the clock now.
    let b = p.ingest(&[polled(104.0, now + hour - 1)]).unwrap();
    assert!(b.rejections.is_empty(), "{:?}", b.rejections);
    // After the step: 105..108 kWh stamped on the corrected clock.
    let after: Vec<_> = (0..4)
        .map(|k| polled(105.0 + k as f64, now - 3 * 60_000 + k * 60_000))
        .collect();
    let b = p.ingest(&after).unwrap();
    assert!(b.rejections.is_empty(), "{:?}", b.rejections);
    assert_eq!(import_kwh(&p), 8.0);
    assert_eq!(p.store().event_count("clock_step_back").unwrap(), 1);
    // The same readings with times of their own: the future one is refused and the ones after
    // the step are out of order (100 -> 103 kWh = 3 kWh).
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(&cfg, &store_path(&dir));
    let own = |r: &ecogate::reading::Reading| ecogate::reading::Reading {
        stamped_on_arrival: false,
        ..r.clone()
    };
    p.ingest(&ahead.iter().map(own).collect::<Vec<_>>())
        .unwrap();
    let b = p.ingest(&[own(&polled(104.0, now + hour - 1))]).unwrap();
    assert_eq!(b.rejections[0].reason.name(), "future_timestamp");
    p.ingest(&after.iter().map(own).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(import_kwh(&p), 3.0);
}

#[test]
fn retention_drops_old_detail_and_keeps_days_months_years() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(FACTORY);
    let mut p = pipeline(&cfg, &store_path(&dir));
    p.ingest(&[
        reading("grid", "import", 100.0, "kWh", "2024-01-01T00:00:00Z"),
        reading("grid", "import", 110.0, "kWh", "2024-01-01T00:15:00Z"),
    ])
    .unwrap();
    let retention = ecogate::config::Retention {
        readings_days: 30,
        minute_days: 7,
        quarter_hour_days: 30,
        hour_days: 30,
        events_days: 0,
    };
    // 60 days later: readings and sub-day windows go; day, month and year stay.
    let deleted = p
        .store()
        .apply_retention(&retention, ts("2024-03-01T00:00:00Z"))
        .unwrap();
    // The delta covers (00:00, 00:15]: 15 minute windows, 1 quarter-hour and 1 hour window at
    // 4 levels each, and 2 readings: 2 + 17 x 4 = 70 rows.
    assert_eq!(deleted, 70);
    assert_eq!(p.store().reading_count().unwrap(), 0);
    let minute = p
        .store()
        .sums(
            p.accountant(),
            WindowKind::Minute,
            Entity::Meter(0),
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(minute.get(Metric::GridImportKwh), 0.0);
    assert_eq!(import_kwh(&p), 10.0);
}
