//! The shipped Prometheus rules and Alertmanager configuration, checked by the real tools:
//! `promtool check rules`, `promtool test rules` (a unit test per alert), `amtool check-config`.

use std::process::Command;

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed (scripts/test.sh installs it): {e}")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{said}");
}

#[test]
fn prometheus_rules_are_valid() {
    run(
        "promtool",
        &["check", "rules", "deploy/prometheus/ecogate.rules.yml"],
    );
}

#[test]
fn every_alert_passes_its_unit_test() {
    run(
        "promtool",
        &["test", "rules", "deploy/prometheus/ecogate.rules.test.yml"],
    );
}

#[test]
fn alertmanager_example_is_valid() {
    run(
        "amtool",
        &["check-config", "deploy/alertmanager/alertmanager.yml"],
    );
}

#[test]
fn every_alert_has_a_unit_test() {
    let rules = std::fs::read_to_string("deploy/prometheus/ecogate.rules.yml").unwrap();
    let tests = std::fs::read_to_string("deploy/prometheus/ecogate.rules.test.yml").unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 16, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "alert {a} has no unit test in ecogate.rules.test.yml"
        );
    }
}
