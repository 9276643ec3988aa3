//! Every configuration error names the file, line:column and key path, and says what is wrong.

mod common;

use ecogate::app::AppConfig as Config;
use std::path::Path;

fn errors(text: &str) -> String {
    match Config::parse(Path::new("park.toml"), text) {
        Ok(_) => panic!("config should be invalid:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = r#"[park]
name = "P"

[[firms]]
id = "f1"
name = "F"
land_mu = 10
"#;

#[test]
fn the_example_configuration_is_valid() {
    Config::load(Path::new("config/ecogate.example.toml")).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn site_naming_an_unknown_firm() {
    let text = format!("{HEAD}\n[[sites]]\nid = \"s1\"\nfirm = \"f2\"\nkind = \"factory\"\n");
    let e = errors(&text);
    assert_eq!(
        e,
        "park.toml:11:8: sites[0].firm: unknown firm `f2`: no [[firms]] has this id"
    );
}

#[test]
fn duplicate_ids() {
    let text = format!("{HEAD}\n[[firms]]\nid = \"f1\"\nname = \"G\"\nland_mu = 3\n");
    let e = errors(&text);
    assert_eq!(
        e,
        "park.toml:10:6: firms[1].id: duplicate id `f1`: already used at firms[0].id"
    );
}

#[test]
fn zero_negative_and_missing_land_area() {
    let e = errors("[park]\nname = \"P\"\n[[firms]]\nid = \"a\"\nname = \"A\"\nland_mu = 0\n[[firms]]\nid = \"b\"\nname = \"B\"\nland_m2 = -5\n[[firms]]\nid = \"c\"\nname = \"C\"\n");
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines[0],
        "park.toml:6:11: firms[0].land_mu: must be a finite number > 0, got 0"
    );
    assert_eq!(
        lines[1],
        "park.toml:10:11: firms[1].land_m2: must be a finite number > 0, got -5"
    );
    assert_eq!(
        lines[2],
        "park.toml:12:6: firms[2].land_mu: missing land area: give land_mu (mu, 亩) or land_m2"
    );
}

fn meter(channel: &str) -> String {
    format!("{HEAD}\n[[sites]]\nid = \"s1\"\nfirm = \"f1\"\nkind = \"factory\"\n\n[[meters]]\nid = \"m1\"\nsite = \"s1\"\nchannels = [\n  {channel},\n]\n")
}

#[test]
fn unit_that_does_not_fit_the_quantity() {
    let e = errors(&meter(
        r#"{ id = "c", carrier = "grid_import", kind = "counter", unit = "Nm3", max_rate_per_hour = 10 }"#,
    ));
    assert_eq!(
        e,
        "park.toml:18:65: meters[0].channels[0].unit: unit `Nm3` (volume) does not fit carrier `grid_import` as a counter: use one of Wh, kWh, MWh"
    );
    // A power unit fits an energy carrier only as an integrated gauge.
    let e = errors(&meter(
        r#"{ id = "c", carrier = "grid_import", kind = "counter", unit = "kW", max_rate_per_hour = 10 }"#,
    ));
    assert!(
        e.contains("unit `kW` (power) does not fit carrier `grid_import` as a counter"),
        "{e}"
    );
    Config::parse(
        Path::new("park.toml"),
        &meter(r#"{ id = "c", carrier = "grid_import", kind = "gauge", unit = "kW", integrate = true }"#),
    )
    .unwrap();
}

#[test]
fn carrier_with_no_factor() {
    let e = errors(&meter(
        r#"{ id = "c", carrier = "steam", kind = "counter", unit = "t", max_rate_per_hour = 10 }"#,
    ));
    assert_eq!(
        e,
        "park.toml:18:25: meters[0].channels[0].carrier: carrier `steam` needs the factor co2.steam, and ecogate ships none: add [factors.co2.steam] with value, unit, year and source"
    );
    // Given the factor, it is valid.
    let ok = format!(
        "{}\n[factors.co2.steam]\nvalue = 0.27\nunit = \"tCO2/t\"\nyear = 2024\nsource = \"supplier's steam certificate\"\n",
        meter(r#"{ id = "c", carrier = "steam", kind = "counter", unit = "t", max_rate_per_hour = 10 }"#)
    );
    let cfg = Config::parse(Path::new("park.toml"), &ok).unwrap();
    assert_eq!(cfg.factors.co2_per_base("steam"), Some(0.27));
}

#[test]
fn grid_factor_missing_for_region_and_year() {
    let text = meter(r#"{ id = "c", carrier = "grid_import", kind = "counter", unit = "kWh", max_rate_per_hour = 10 }"#)
        .replace("name = \"P\"\n", "name = \"P\"\ngrid_region = \"henan\"\ngrid_factor_year = 2023\n");
    let e = errors(&text);
    assert!(
        e.contains("meters[0].channels[0].carrier: carrier `grid_import` needs the factor co2.grid_location, and ecogate ships none for grid region `henan` and year 2023"),
        "{e}"
    );
}

#[test]
fn unknown_key_is_a_typo_not_silence() {
    let e = errors("[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nlnad_mu = 3\n");
    assert!(
        e.starts_with("park.toml:6:1: firms[0].lnad_mu: unknown field `lnad_mu`, expected one of"),
        "{e}"
    );
    let e = errors("[park]\nname = \"P\"\ntimezon = \"UTC\"\n");
    assert!(
        e.starts_with("park.toml:3:1: park.timezon: unknown field `timezon`"),
        "{e}"
    );
}

#[test]
fn wrong_type_and_bad_toml() {
    let e =
        errors("[park]\nname = \"P\"\n[[firms]]\nid = \"f\"\nname = \"F\"\nland_mu = \"ten\"\n");
    assert!(
        e.starts_with(
            "park.toml:6:11: firms[0].land_mu: invalid type: string \"ten\", expected f64"
        ),
        "{e}"
    );
    let e = errors("[park\nname = \"P\"\n");
    assert!(e.starts_with("park.toml:1:"), "{e}");
    assert!(e.contains("not valid TOML"), "{e}");
}

#[test]
fn counter_without_max_rate_and_unknown_names() {
    let e = errors(&meter(
        r#"{ id = "c", carrier = "grid_import", kind = "counter", unit = "kWh" }"#,
    ));
    assert!(
        e.contains("meters[0].channels[0].max_rate_per_hour: a counter needs max_rate_per_hour"),
        "{e}"
    );
    let e = errors(&meter(
        r#"{ id = "c", carrier = "electricity", kind = "counter", unit = "kWh", max_rate_per_hour = 1 }"#,
    ));
    assert!(
        e.contains("park.toml:18:25: meters[0].channels[0].carrier: unknown carrier `electricity`"),
        "{e}"
    );
    let e = errors(&meter(
        r#"{ id = "c", carrier = "grid_import", kind = "counter", unit = "kWhh", max_rate_per_hour = 1 }"#,
    ));
    assert!(
        e.contains("meters[0].channels[0].unit: unknown unit `kWhh`"),
        "{e}"
    );
    let e = errors(&format!(
        "{HEAD}\n[[sites]]\nid = \"s\"\nfirm = \"f1\"\nkind = \"farm\"\n"
    ));
    assert!(e.contains("sites[0].kind: unknown site kind `farm`: expected one of factory, charging_station, hydrogen_site, pv, storage"), "{e}");
}

#[test]
fn factor_overrides_are_checked() {
    let e = errors(&format!("{HEAD}\n[factors.co2.grid_location]\nvalue = 0.6\nunit = \"kgCO2/Nm3\"\nyear = 2024\nsource = \"x\"\n"));
    assert!(e.contains("factors.co2.grid_location.unit: `kgCO2/Nm3`: the unit must be kgCO2 or tCO2 per a unit of energy (Wh, kWh, MWh)"), "{e}");
    let e = errors(&format!("{HEAD}\n[factors.co2.grid_locaton]\nvalue = 0.6\nunit = \"kgCO2/kWh\"\nyear = 2024\nsource = \"x\"\n"));
    assert!(
        e.contains("factors.co2.grid_locaton: unknown factor `grid_locaton`"),
        "{e}"
    );
    let e = errors(&format!("{HEAD}\n[factors.tce.diesel]\nvalue = 1.4\nunit = \"kgce/kg\"\nyear = 2024\nsource = \" \"\n"));
    assert!(
        e.contains("factors.tce.diesel.source: must name where the figure comes from"),
        "{e}"
    );
    // An override without a year is refused by the parser, naming the key.
    let e = errors(&format!(
        "{HEAD}\n[factors.tce.diesel]\nvalue = 1.4\nunit = \"kgce/kg\"\nsource = \"s\"\n"
    ));
    assert!(
        e.contains("factors.tce.diesel: missing field `year`"),
        "{e}"
    );
}

#[test]
fn all_problems_are_reported_together() {
    let e = errors("[park]\nname = \"P\"\ntimezone = \"Mars/Olympus\"\n[[firms]]\nid = \"bad id\"\nname = \"F\"\nland_mu = -1\n");
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(lines[0].contains("park.timezone: unknown time zone `Mars/Olympus`"));
    assert!(lines[1].contains("firms[0].id: id `bad id` must be 1-64 characters"));
    assert!(lines[2].contains("firms[0].land_mu: must be a finite number > 0, got -1"));
}

mod no_panic {
    use ecogate::app::AppConfig as Config;
    use proptest::prelude::*;
    use std::path::Path;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Any corruption of a valid configuration gives Ok or located errors, never a panic.
        #[test]
        fn corrupted_configs_never_panic(
            cuts in prop::collection::vec((0.0f64..1.0, 0usize..40, "[ -~\\n\"=\\[\\]{},.亩]{0,8}"), 1..6)
        ) {
            let mut text = std::fs::read_to_string("config/ecogate.example.toml").unwrap();
            for (at, len, insert) in cuts {
                let mut start = ((text.len() as f64) * at) as usize;
                while !text.is_char_boundary(start) { start -= 1; }
                let mut end = (start + len).min(text.len());
                while !text.is_char_boundary(end) { end -= 1; }
                text.replace_range(start..end, &insert);
            }
            if let Err(e) = Config::parse(Path::new("fuzz.toml"), &text) {
                for line in e.to_string().lines() {
                    prop_assert!(line.starts_with("fuzz.toml"), "{}", line);
                }
            }
        }
    }
}

#[test]
fn alerting_needs_its_windows_and_a_destination() {
    let e = errors(&format!("{HEAD}\n[accounting]\nwindows = [\"1d\"]\n[alerting]\nwebhook_url = \"http://127.0.0.1:9/x\"\n"));
    assert!(
        e.contains("alerting: alerting reads the 1h and year windows"),
        "{e}"
    );
    let e = errors(&format!("{HEAD}\n[alerting]\ninterval_s = 5\n"));
    assert!(
        e.contains("alerting: give webhook_url, mqtt_topic or both"),
        "{e}"
    );
    let e = errors(&format!(
        "{HEAD}\n[alerting]\nwebhook_url = \"ftp://example.invalid/x\"\n"
    ));
    assert!(
        e.contains(
            "alerting.webhook_url: `ftp://example.invalid/x`: give an http(s)://host[:port]/path URL"
        ),
        "{e}"
    );
    let e = errors(&format!("{HEAD}\n[alerting]\nmqtt_topic = \"a/#\"\n"));
    assert!(
        e.contains("alerting.mqtt_topic: a topic to publish to: not empty, no wildcards"),
        "{e}"
    );
}

#[test]
fn influx_section_errors_point_at_their_keys() {
    let text = "[park]\nname = 'P\\\\Q'\n[[firms]]\nid = \"f1\"\nname = \"F\"\nland_mu = 10\n\
                [accounting]\nwindows = [\"1h\", \"year\"]\n\
                [influx]\nurl = \"ftp://x\"\norg = \"\"\nbucket = \"b\"\ntoken = \"t\"\ntoken_env = \"T\"\nwindows = [\"1m\"]\nbatch_lines = 0\n\
                [influx.outbox]\nfsync = \"sometimes\"\nwhen_full = \"drop\"\nmax_bytes = 100\n";
    let e = errors(text);
    let want = [
        "park.toml:10:7: influx.url: `ftp://x` is not an http(s) URL such as http://127.0.0.1:8086",
        "park.toml:11:7: influx.org: must not be empty",
        "park.toml:2:8: park.name: becomes the `park` tag of every InfluxDB point and contains a backslash, which line protocol cannot carry unambiguously in a tag",
        "park.toml:10:7: influx.token: give one of token, token_file and token_env",
        "park.toml:16:15: influx.batch_lines: must be 1 to 100000, got 0",
        "park.toml:15:11: influx.windows: window `1m` is not in accounting.windows, so there is nothing to write",
        "park.toml:20:13: influx.outbox.max_bytes: must be 65536 to 1125899906842624, got 100",
        "park.toml:18:9: influx.outbox.fsync: unknown policy `sometimes` (always, never)",
        "park.toml:19:13: influx.outbox.when_full: unknown policy `drop` (block, drop_oldest)",
    ];
    for w in want {
        assert!(e.lines().any(|l| l == w), "missing `{w}` in:\n{e}");
    }
}

#[test]
fn influx_needs_url_org_and_bucket() {
    let e = errors(&format!("{HEAD}\n[influx]\nbucket = \"b\"\n"));
    assert!(
        e.contains("park.toml:10:10: influx.url: the [influx] section needs url, org and bucket"),
        "{e}"
    );
}

#[test]
fn sparkplug_subscriptions_are_checked() {
    let meter = "[[sites]]\nid = \"s1\"\nfirm = \"f1\"\nkind = \"factory\"\n[[meters]]\nid = \"m1\"\nsite = \"s1\"\nchannels = [{ id = \"e\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100 }]\n";
    let mqtt = "[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"c\"\n\
                [[mqtt.subscriptions]]\ntopic = \"plant/{meter}\"\ndecoder = \"sparkplug_b\"\nfields = { e = \"Energy\" }\n\
                [[mqtt.subscriptions]]\ntopic = \"spBv1.0/{g}/{t}/{n}/{meter}\"\ndecoder = \"sparkplug_b\"\nfields = { e = \"Energy\" }\ntimestamp = \"/ts\"\n\
                [[mqtt.subscriptions]]\ntopic = \"spBv1.0/{g}/{t}/{meter}\"\ndecoder = \"sparkplug_b\"\nfields = { e = \"\" }\n";
    let e = errors(&format!("{HEAD}\n{meter}{mqtt}"));
    for want in [
        "mqtt.subscriptions[0].topic: a Sparkplug B topic starts with spBv1.0/",
        "mqtt.subscriptions[1].timestamp: Sparkplug B payloads carry their own timestamps",
        "mqtt.subscriptions[2].fields.e: the Sparkplug metric name is empty",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
    // Three errors, each naming the file and its line.
    assert_eq!(e.lines().count(), 3, "{e}");
    assert!(
        e.lines().all(|l| l.starts_with("park.toml:")
            && l.split(':')
                .nth(1)
                .is_some_and(|n| n.parse::<u32>().is_ok())),
        "{e}"
    );
}

/// `check` says what `run` would fail on, and never repeats a secret.
#[test]
fn check_catches_what_run_would_fail_on_and_never_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    // A store path that is a folder, and one under a file.
    let e = errors(&format!(
        "{HEAD}\n[store]\npath = \"{}\"\n",
        dir.path().display()
    ));
    assert!(
        e.contains("store.path: `") && e.contains("` is a folder: give the store's file"),
        "{e}"
    );
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let e = errors(&format!(
        "{HEAD}\n[store]\npath = \"{}/sub/s.db\"\n",
        file.display()
    ));
    assert!(e.contains("is a file, so the store's folder"), "{e}");
    // Missing TLS files: reported with the file's path and what to do.
    let e = errors(&format!(
        "{HEAD}\n[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"g\"\n[mqtt.tls]\nca_file = \"{}/no-such-ca.pem\"\n",
        dir.path().display()
    ));
    assert!(
        e.contains("mqtt.tls: ")
            && e.contains("no-such-ca.pem")
            && e.contains("give PEM files that exist"),
        "{e}"
    );
    // Credentials in the InfluxDB URL: refused, and the password is not shown.
    let e = errors(&format!(
        "[park]\nname = \"P\"\n[accounting]\nwindows = [\"1h\", \"year\"]\n[influx]\nurl = \"http://admin:S3cr3t-pw@127.0.0.1:8086\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"tok-PLANTED-1\"\n[influx.outbox]\ndir = \"{}/outbox\"\n",
        dir.path().display()
    ));
    assert!(
        e.contains("influx.url: `http://***@127.0.0.1:8086` carries credentials"),
        "{e}"
    );
    assert!(
        !e.contains("S3cr3t-pw") && !e.contains("tok-PLANTED-1"),
        "{e}"
    );
    // A mistyped MQTT password is not echoed.
    let e = errors(&format!(
        "{HEAD}\n[mqtt]\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword = 918273645\n"
    ));
    assert!(
        e.contains("mqtt.password: must be a string in quotes"),
        "{e}"
    );
    assert!(!e.contains("918273645"), "{e}");
}

#[test]
fn secrets_never_appear_in_a_summary_or_a_debug_print() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[park]\nname = \"P\"\n[accounting]\nwindows = [\"1h\", \"year\"]\n[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"g\"\nusername = \"u\"\npassword = \"mq-PLANTED-2\"\n[influx]\nurl = \"http://127.0.0.1:8086\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"tok-PLANTED-1\"\n[influx.outbox]\ndir = \"{}/outbox\"\n",
        dir.path().display()
    );
    let app = Config::parse(Path::new("park.toml"), &text).unwrap();
    let shown = format!("{}\n{:?}", app.summary(), app);
    for secret in ["tok-PLANTED-1", "mq-PLANTED-2"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
}

/// An outbox that holds another store's records: `run` refuses to start on it (its records would
/// be cut to this store's sequence), so `check` says so too, with what to do, and exits 2. Before,
/// `check` passed it.
#[test]
fn check_refuses_an_outbox_of_another_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let outbox = dir.path().join("outbox");
    let cfg = dir.path().join("park.toml");
    std::fs::write(
        &cfg,
        format!(
            "[park]\nname = \"P\"\n[accounting]\nwindows = [\"1h\", \"year\"]\n[store]\npath = \"{}\"\n[influx]\nurl = \"http://127.0.0.1:8086\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"\n[influx.outbox]\ndir = \"{}\"\n",
            store.display(),
            outbox.display()
        ),
    )
    .unwrap();
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ecogate"))
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    // No store and no outbox yet: nothing to compare.
    assert_eq!(check().status.code(), Some(0));
    let id = ecogate::sinks::store::Store::open(&store)
        .unwrap()
        .store_id()
        .unwrap();
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join("store-id"), "0123456789abcdef\n").unwrap();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("holds the records of another store (store id 0123456789abcdef;")
            && stderr.contains(&format!("has id {id})"))
            && stderr.contains("give this store an outbox of its own"),
        "{stderr}"
    );
    std::fs::write(outbox.join("store-id"), format!("{id}\n")).unwrap();
    let out = check();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_sequence_number_is_read_from_json_payloads_only() {
    let meter = "[[sites]]\nid = \"s1\"\nfirm = \"f1\"\nkind = \"factory\"\n[[meters]]\nid = \"m1\"\nsite = \"s1\"\nchannels = [{ id = \"e\", carrier = \"grid_import\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = 100 }]\n";
    let mqtt = "[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"c\"\n\
                [[mqtt.subscriptions]]\ntopic = \"a/{meter}\"\ndecoder = \"number\"\nchannel = \"e\"\nsequence = \"/seq\"\n\
                [[mqtt.subscriptions]]\ntopic = \"b/{meter}\"\ndecoder = \"json\"\nfields = { e = \"/e\" }\nsequence = \"seq\"\n\
                [[mqtt.subscriptions]]\ntopic = \"c/{meter}\"\ndecoder = \"json\"\nfields = { e = \"/e\" }\nsequence = \"/seq\"\n";
    let e = errors(&format!("{HEAD}\n{meter}{mqtt}"));
    for want in [
        "mqtt.subscriptions[0].sequence: a message sequence number is read from the json decoder's payloads only",
        "mqtt.subscriptions[1].sequence: a JSON pointer starts with /",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
    // The third is valid: two errors, each naming the file and its line.
    assert_eq!(e.lines().count(), 2, "{e}");
    assert!(e.lines().all(|l| l.starts_with("park.toml:")), "{e}");
}
