use super::*;
use crate::accounting::metric::Metric;

const PARK: &str = r#"
[park]
name = "P"
grid_factor_year = 2022
[[firms]]
id = "f"
name = "F"
land_mu = 1
[[sites]]
id = "s"
firm = "f"
kind = "factory"
[[meters]]
id = "m"
site = "s"
channels = [{ id = "e", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 1000 }]
"#;

fn accountant() -> Accountant {
    let cfg = Config::parse_core(std::path::Path::new("t.toml"), PARK).unwrap();
    Accountant::new(Arc::new(cfg))
}

fn reading(kwh: f64, ts_ms: i64) -> Reading {
    Reading {
        meter: "m".into(),
        channel: "e".into(),
        amount: kwh,
        unit: Unit::parse("kWh").unwrap(),
        ts_ms,
        quality: Quality::Good,
        stamped_on_arrival: false,
    }
}

fn window_kwh(batch: &Batch, window: WindowKind, entity: Entity) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = batch
        .aggregates
        .iter()
        .filter(|(k, _)| k.window == window && k.entity == entity)
        .map(|(k, s)| (k.start_ms, s.get(Metric::GridImportKwh)))
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out
}

#[test]
fn a_delta_across_a_minute_boundary_is_split_in_exact_parts() {
    // 00:00:30 -> 00:01:20 (UTC, Shanghai minutes are UTC minutes), 1 kWh over 50 s: 30 s
    // (0.6 kWh) in the first minute, 20 s (0.4 kWh) in the second; the hour holds 1 kWh.
    let a = accountant();
    let t = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    let b = a.process(
        &[reading(10.0, t + 30_000), reading(11.0, t + 80_000)],
        t + 90_000,
    );
    assert_eq!(
        window_kwh(&b, WindowKind::Minute, Entity::Meter(0)),
        vec![(t, 0.6), (t + 60_000, 0.4)]
    );
    assert_eq!(
        window_kwh(&b, WindowKind::Hour, Entity::Park),
        vec![(t, 1.0)]
    );
}

#[test]
fn a_reading_on_a_minute_boundary_closes_the_minute_before() {
    let a = accountant();
    let t = 1_704_067_200_000;
    let b = a.process(
        &[reading(10.0, t + 10_000), reading(12.0, t + 60_000)],
        t + 90_000,
    );
    assert_eq!(
        window_kwh(&b, WindowKind::Minute, Entity::Meter(0)),
        vec![(t, 2.0)]
    );
}

#[test]
fn negative_registers_are_refused_and_nothing_else_is_lost() {
    let a = accountant();
    let t = 1_704_067_200_000;
    let b = a.process(
        &[
            reading(10.0, t),
            reading(-5.0, t + 10_000),
            reading(11.0, t + 20_000),
        ],
        t + 90_000,
    );
    assert_eq!(b.rejections.len(), 1);
    assert_eq!(b.rejections[0].reason, RejectReason::NegativeCounter);
    assert_eq!(b.rejections[0].index, 1);
    assert_eq!(window_kwh(&b, WindowKind::Year, Entity::Firm(0))[0].1, 1.0);
}

#[test]
fn process_changes_nothing_until_apply() {
    let a = accountant();
    let t = 1_704_067_200_000;
    let b = a.process(&[reading(10.0, t)], t + 1_000);
    assert!(a
        .state(ChannelRef {
            meter: 0,
            channel: 0
        })
        .is_none());
    let mut a = a;
    a.apply(&b);
    assert!(a
        .state(ChannelRef {
            meter: 0,
            channel: 0
        })
        .is_some());
}
