//! Property tests of the counter logic and of restart safety.

mod common;

use common::*;
use ecogate::accounting::counter::{step, CounterSpec, CounterState, Point, Step};
use ecogate::accounting::ledger::Entity;
use ecogate::accounting::window::WindowKind;
use ecogate::reading::Reading;
use proptest::prelude::*;

const MICRO: i64 = 1_000_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// For any monotone consumption whose register wraps at the rollover value, the deltas sum
    /// exactly to the true consumption.
    #[test]
    fn deltas_of_a_wrapping_monotone_counter_sum_to_the_truth(
        rollover_kwh in 1_000i64..1_000_000,
        start_frac in 0.0f64..1.0,
        steps in prop::collection::vec((0i64..=2_000_000_000, 1i64..=3_600), 1..300),
    ) {
        // At most 10,000 kWh/h; each step's increment is at most what that rate allows in its
        // interval and below the rollover value.
        let max_rate_kwh_per_h = 10_000i64;
        let spec = CounterSpec { rollover_micro: Some(rollover_kwh * MICRO), max_rate_micro_per_h: (max_rate_kwh_per_h * MICRO) as f64, replacements: Vec::new() };
        let r = rollover_kwh * MICRO;
        let mut value = ((r as f64) * start_frac) as i64 % r;
        let mut t = 0i64;
        let mut state = CounterState::default();
        prop_assert_eq!(step(&spec, &mut state, Point { micro: value, ts_ms: t }).0, Step::Baseline);
        let mut truth = 0i64;
        let mut counted = 0i64;
        for (raw_inc, dt_s) in steps {
            let cap = max_rate_kwh_per_h * MICRO * dt_s / 3_600;
            let inc = raw_inc % (cap.min(r - 1) + 1);
            truth += inc;
            value = (value + inc) % r;
            t += dt_s * 1000;
            match step(&spec, &mut state, Point { micro: value, ts_ms: t }).0 {
                Step::Delta { delta_micro, .. } => counted += delta_micro,
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(counted, truth);
    }
}

/// One event in a generated meter stream.
#[derive(Debug, Clone)]
enum Ev {
    /// Consumption of this many Wh, read after this many seconds.
    Use(u32, u32),
    /// The meter is replaced by a new one starting at zero.
    Reset(u32),
    /// A corrupted read far above the true value.
    Spike(u32),
    /// The previous reading again.
    Duplicate,
    /// A reading from before the previous one.
    Late,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        8 => (0u32..500_000, 60u32..3_600).prop_map(|(wh, s)| Ev::Use(wh, s)),
        1 => (60u32..3_600).prop_map(Ev::Reset),
        1 => (60u32..3_600).prop_map(Ev::Spike),
        1 => Just(Ev::Duplicate),
        1 => Just(Ev::Late),
    ]
}

/// Turns events into readings of two channels (grid import and gas) with their timestamps.
fn readings(events: &[Ev]) -> Vec<Reading> {
    let base = ts("2024-03-01T00:00:00Z");
    let mut t = base;
    let mut grid_wh: u64 = 7_000_000;
    let mut out: Vec<Reading> = Vec::new();
    let mk = |wh: u64, t: i64| Reading {
        meter: "grid".into(),
        channel: "import".into(),
        amount: wh as f64,
        unit: ecogate::units::Unit::parse("Wh").unwrap(),
        ts_ms: t,
        quality: ecogate::reading::Quality::Good,
        stamped_on_arrival: false,
    };
    out.push(mk(grid_wh, t));
    for e in events {
        match e {
            Ev::Use(wh, s) => {
                t += *s as i64 * 1000;
                grid_wh += *wh as u64;
                out.push(mk(grid_wh, t));
                let mut gas = out.last().unwrap().clone();
                gas.meter = "gas".into();
                gas.channel = "vol".into();
                gas.unit = ecogate::units::Unit::parse("Nm3").unwrap();
                gas.amount = (grid_wh / 10_000) as f64;
                out.push(gas);
            }
            Ev::Reset(s) => {
                t += *s as i64 * 1000;
                grid_wh = 1_000;
                out.push(mk(grid_wh, t));
            }
            Ev::Spike(s) => out.push(mk(grid_wh + 50_000_000_000, t + *s as i64 * 500)),
            Ev::Duplicate => {
                let last = out.last().unwrap().clone();
                out.push(last);
            }
            Ev::Late => out.push(mk(grid_wh / 2, t - 1_000)),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Splitting a stream at any point with a restart (counter states reloaded from the store)
    /// gives the same totals as one uninterrupted run, whatever the stream holds.
    #[test]
    fn a_restart_anywhere_gives_the_same_totals(
        events in prop::collection::vec(ev(), 1..60),
        split_frac in 0.0f64..=1.0,
        batch in 1usize..7,
    ) {
        let cfg = config(FACTORY);
        let all = readings(&events);
        let split = ((all.len() as f64) * split_frac) as usize;

        let dir_a = tempfile::tempdir().unwrap();
        let mut a = pipeline(&cfg, &store_path(&dir_a));
        for chunk in all.chunks(batch) {
            a.ingest(chunk).unwrap();
        }
        let dir_b = tempfile::tempdir().unwrap();
        let path_b = store_path(&dir_b);
        {
            let mut b = pipeline(&cfg, &path_b);
            for chunk in all[..split].chunks(batch) {
                b.ingest(chunk).unwrap();
            }
        }
        let mut b = pipeline(&cfg, &path_b);
        for chunk in all[split..].chunks(batch) {
            b.ingest(chunk).unwrap();
        }
        for entity in [Entity::Meter(0), Entity::Meter(2), Entity::Firm(0), Entity::Park] {
            for window in [WindowKind::Minute, WindowKind::Day, WindowKind::Year] {
                let sa = a.store().sums(a.accountant(), window, entity, 0, i64::MAX).unwrap();
                let sb = b.store().sums(b.accountant(), window, entity, 0, i64::MAX).unwrap();
                prop_assert_eq!(sa, sb, "{:?} {:?}", entity, window);
            }
        }
    }
}
