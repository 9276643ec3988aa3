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
