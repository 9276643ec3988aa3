//! Every MQTT payload decoder (JSON with pointers, JSON arrays, OCPP, plain numbers) on
//! arbitrary bytes: an error or readings, never a panic.
#![no_main]

use ecogate::app::AppConfig;
use ecogate::sources::mqtt::decode::{decode, Meters};
use ecogate::units::Unit;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct AnyMeter;

impl Meters for AnyMeter {
    fn unit(&self, _meter: &str, channel: &str) -> Option<Unit> {
        Unit::parse(if channel == "p" { "kW" } else { "kWh" })
    }
    fn exists(&self, _meter: &str) -> bool {
        true
    }
}

const CONFIG: &str = r#"
[park]
name = "F"
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
channels = [{ id = "e", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 1e6 }, { id = "p", kind = "gauge", unit = "kW" }]
[mqtt]
host = "127.0.0.1"
client_id = "fuzz"
[[mqtt.subscriptions]]
topic = "a/{meter}"
decoder = "json"
fields = { e = "/e/in", p = "/p" }
units = { p = "W" }
timestamp = "/ts"
[[mqtt.subscriptions]]
topic = "b/{meter}"
decoder = "json_array"
[[mqtt.subscriptions]]
topic = "c/{meter}"
decoder = "ocpp"
channel = "e"
[[mqtt.subscriptions]]
topic = "d/{meter}"
decoder = "number"
channel = "e"
"#;

fn app() -> &'static AppConfig {
    static APP: OnceLock<AppConfig> = OnceLock::new();
    APP.get_or_init(|| AppConfig::parse(std::path::Path::new("fuzz.toml"), CONFIG).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let app = app();
    let mqtt = app
        .source::<ecogate::sources::mqtt::config::MqttConfig>()
        .expect("the MQTT source is registered");
    for sub in &mqtt.subscriptions {
        let _ = decode(
            sub,
            "m",
            data,
            1_700_000_000_000,
            chrono_tz::Asia::Shanghai,
            &AnyMeter,
        );
    }
});
