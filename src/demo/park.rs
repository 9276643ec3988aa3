//! The simulated park: who is in it, how much each meter draws at a simulated instant, and the
//! configuration ecogate reads it with. Pure: the curves are functions of local time, so a test
//! can integrate them by hand.

use chrono::{Datelike, Timelike};
use std::fmt::Write;

/// A factory firm, metered over Modbus TCP through a gateway of its own.
#[derive(Debug, Clone)]
pub struct Factory {
    pub id: &'static str,
    pub name: &'static str,
    pub sector: &'static str,
    pub land_mu: f64,
    pub output_value_cny: f64,
    /// Load on a weekday day shift.
    pub base_kw: f64,
    pub pv_kwp: f64,
    pub storage_kw: f64,
    /// Short id prefix of its meters.
    pub tag: &'static str,
}

pub const FACTORIES: &[Factory] = &[
    Factory {
        id: "hengda-motors",
        name: "恒达电机有限公司",
        sector: "C3812",
        land_mu: 120.0,
        output_value_cny: 360e6,
        base_kw: 1800.0,
        pv_kwp: 1200.0,
        storage_kw: 0.0,
        tag: "hd",
    },
    // The deliberate high emitter: a glass works (division 30, a 两高 sector) with little
    // output for its energy, so that its carbon-intensity alert fires.
    Factory {
        id: "jinghua-glass",
        name: "晶华玻璃制品有限公司",
        sector: "C3041",
        land_mu: 80.0,
        output_value_cny: 60e6,
        base_kw: 3500.0,
        pv_kwp: 0.0,
        storage_kw: 0.0,
        tag: "jh",
    },
    Factory {
        id: "ruifeng-textile",
        name: "瑞丰纺织有限公司",
        sector: "C1713",
        land_mu: 60.0,
        output_value_cny: 150e6,
        base_kw: 900.0,
        pv_kwp: 0.0,
        storage_kw: 0.0,
        tag: "rf",
    },
    Factory {
        id: "xinchuang-electronics",
        name: "芯创电子科技有限公司",
        sector: "C3973",
        land_mu: 50.0,
        output_value_cny: 420e6,
        base_kw: 1200.0,
        pv_kwp: 600.0,
        storage_kw: 500.0,
        tag: "xc",
    },
    Factory {
        id: "boyuan-pharma",
        name: "博远制药有限公司",
        sector: "C2720",
        land_mu: 70.0,
        output_value_cny: 280e6,
        base_kw: 1000.0,
        pv_kwp: 400.0,
        storage_kw: 0.0,
        tag: "by",
    },
    Factory {
        id: "huamei-food",
        name: "华美食品有限公司",
        sector: "C1469",
        land_mu: 40.0,
        output_value_cny: 90e6,
        base_kw: 600.0,
        pv_kwp: 0.0,
        storage_kw: 0.0,
        tag: "hm",
    },
];

/// The carbon-intensity threshold every factory is held to (tCO2 per 10,000 CNY of output).
pub const INTENSITY_THRESHOLD: f64 = 0.5;

/// Local hour as a fraction (14.5 = 14:30) and whether the day is a weekend.
fn local(ts_ms: i64, tz: chrono_tz::Tz) -> (f64, bool, u32) {
    let t = chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .with_timezone(&tz);
    let h = t.hour() as f64 + t.minute() as f64 / 60.0 + t.second() as f64 / 3600.0;
    let weekend = t.weekday().number_from_monday() >= 6;
    (h, weekend, t.ordinal())
}

/// A deterministic wobble in [-1, 1] from a seed and the quarter hour, so that curves look
/// measured without a random-number dependency.
fn wobble(seed: u32, ts_ms: i64) -> f64 {
    let q = (ts_ms / 900_000) as u64;
    let mut x =
        q.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(seed).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x % 2001) as f64 / 1000.0 - 1.0
}

/// A factory's load: day shift 08-20 on weekdays, a third of it at night and on weekends.
pub fn factory_load_kw(f: &Factory, seed: u32, ts_ms: i64, tz: chrono_tz::Tz) -> f64 {
    let (h, weekend, _) = local(ts_ms, tz);
    let shift = if weekend {
        0.4
    } else if (8.0..20.0).contains(&h) {
        1.0
    } else {
        0.35
    };
    f.base_kw * shift * (1.0 + 0.08 * wobble(seed, ts_ms))
}

/// PV by daylight (06-18, a sine), with a cloudiness of the day.
pub fn pv_kw(kwp: f64, seed: u32, ts_ms: i64, tz: chrono_tz::Tz) -> f64 {
    let (h, _, day) = local(ts_ms, tz);
    if !(6.0..18.0).contains(&h) || kwp == 0.0 {
        return 0.0;
    }
    let sun = (std::f64::consts::PI * (h - 6.0) / 12.0).sin();
    let clouds = 0.55 + 0.35 * (wobble(seed + day, 0) + 1.0) / 2.0;
    kwp * 0.8 * sun * clouds * (1.0 + 0.05 * wobble(seed, ts_ms))
}

/// Storage: charges in the valley (00-06), discharges at the peaks (10-12, 18-20). (charge,
/// discharge) in kW.
pub fn storage_kw(kw: f64, ts_ms: i64, tz: chrono_tz::Tz) -> (f64, f64) {
    let (h, _, _) = local(ts_ms, tz);
    if h < 6.0 {
        (kw * 0.5, 0.0)
    } else if (10.0..12.0).contains(&h) || (18.0..20.0).contains(&h) {
        (0.0, kw * 0.7)
    } else {
        (0.0, 0.0)
    }
}

/// A charging hub's delivered power: morning and evening peaks.
pub fn charging_kw(peak_kw: f64, seed: u32, ts_ms: i64, tz: chrono_tz::Tz) -> f64 {
    let (h, weekend, _) = local(ts_ms, tz);
    let shape = if (7.0..10.0).contains(&h) || (17.0..21.0).contains(&h) {
        1.0
    } else if (10.0..17.0).contains(&h) {
        0.5
    } else {
        0.15
    };
    let day = if weekend { 0.7 } else { 1.0 };
    peak_kw * shape * day * (1.0 + 0.15 * wobble(seed, ts_ms)).max(0.0)
}

/// The electrolyser runs at 60 % of its rating, at full rating while the sun shines.
pub fn electrolyser_kw(rated_kw: f64, ts_ms: i64, tz: chrono_tz::Tz) -> f64 {
    let (h, _, _) = local(ts_ms, tz);
    if (9.0..16.0).contains(&h) {
        rated_kw
    } else {
        rated_kw * 0.6
    }
}

pub const HUBS: &[(&str, &str, f64)] = &[
    ("east-hub", "东区充电站", 600.0),
    ("west-hub", "西区充电站", 360.0),
];
pub const ELECTROLYSER_KW: f64 = 1000.0;
pub const ELECTROLYSER_PV_KWP: f64 = 800.0;
/// kWh per kg of hydrogen (alkaline electrolysis with compression).
pub const KWH_PER_KG_H2: f64 = 55.0;

/// A firm's annual statistics in proportion to its output, as the tax bureau would hand them
/// over: tax 5 %, revenue 105 %, value added 25 %, R&D 3 %, a person per million CNY, a tonne
/// of pollutant equivalent per 5 million CNY.
fn stats(output_value_cny: f64) -> String {
    format!(
        "output_value_cny = {output_value_cny}\ntax_cny = {}\nrevenue_cny = {}\nvalue_added_cny = {}\nrd_spend_cny = {}\nemployees = {}\npollutant_t = {}\n",
        output_value_cny * 0.05,
        output_value_cny * 1.05,
        output_value_cny * 0.25,
        output_value_cny * 0.03,
        (output_value_cny / 1e6).round().max(1.0),
        (output_value_cny / 5e6).max(0.1)
    )
}

/// The DL/T 645 address of the hydrogen site's grid meter (its nameplate number).
pub const QH_GRID_ADDRESS: &str = "202401000001";

/// ecogate's configuration for the demo park: Modbus devices at `modbus[i]` (the factory
/// gateways, in the order of [`FACTORIES`]), MQTT at `mqtt_port`, the store in `dir`.
pub fn config_text(
    dir: &std::path::Path,
    modbus: &[std::net::SocketAddr],
    dlt645: std::net::SocketAddr,
    mqtt_port: u16,
    listen: std::net::SocketAddr,
) -> String {
    let mut t = String::new();
    let _ = write!(
        t,
        "# Written by `ecogate demo`: a simulated park. Edit at will; the demo writes it anew each run.\n\
         [park]\nname = \"示范绿色产业园 Demo Green Park\"\ntimezone = \"Asia/Shanghai\"\ngrid_region = \"national\"\ngrid_factor_year = 2023\n\n"
    );
    for f in FACTORIES {
        let _ = write!(
            t,
            "[[firms]]\nid = \"{}\"\nname = \"{}\"\nland_mu = {}\nsector = \"{}\"\n[firms.stats]\n{}intensity_threshold_tco2_per_10k_cny = {INTENSITY_THRESHOLD}\n\n",
            f.id, f.name, f.land_mu, f.sector, stats(f.output_value_cny)
        );
    }
    let _ = write!(t, "[[firms]]\nid = \"lvneng-charging\"\nname = \"绿能充电科技\"\nland_mu = 8\nsector = \"O8190\"\n[firms.stats]\n{}\n", stats(6e6));
    let _ = write!(t, "[[firms]]\nid = \"qinghe-hydrogen\"\nname = \"清和氢能\"\nland_mu = 25\nsector = \"C2619\"\n[firms.stats]\n{}\n", stats(40e6));
    for f in FACTORIES {
        let _ = write!(t, "[[sites]]\nid = \"{}-plant\"\nname = \"{}厂区\"\nfirm = \"{}\"\nkind = \"factory\"\n\n", f.tag, f.name, f.id);
    }
    for (id, name, _) in HUBS {
        let _ = write!(t, "[[sites]]\nid = \"{id}\"\nname = \"{name}\"\nfirm = \"lvneng-charging\"\nkind = \"charging_station\"\n\n");
    }
    t.push_str("[[sites]]\nid = \"qinghe-electrolyser\"\nname = \"清和制氢加氢站\"\nfirm = \"qinghe-hydrogen\"\nkind = \"hydrogen_site\"\n\n");
    let energy = |id: &str, carrier: &str, max: f64| {
        format!("{{ id = \"{id}\", carrier = \"{carrier}\", kind = \"counter\", unit = \"kWh\", max_rate_per_hour = {max} }}")
    };
    for f in FACTORIES {
        let max = f.base_kw * 2.0 + f.storage_kw;
        let _ = write!(
            t,
            "[[meters]]\nid = \"{}-main\"\nsite = \"{}-plant\"\ndescription = \"CHINT DTSU666 at the incomer\"\nchannels = [\n  {},\n  {},\n  {{ id = \"power\", kind = \"gauge\", unit = \"kW\" }},\n]\n\n",
            f.tag, f.tag, energy("import", "grid_import", max), energy("export", "grid_export", f.pv_kwp.max(1.0) * 1.5)
        );
        if f.pv_kwp > 0.0 {
            let _ = write!(t, "[[meters]]\nid = \"{}-pv\"\nsite = \"{}-plant\"\ndescription = \"rooftop PV, {} kWp\"\nchannels = [{}]\n\n", f.tag, f.tag, f.pv_kwp, energy("generation", "pv_generation", f.pv_kwp * 1.5));
        }
        if f.storage_kw > 0.0 {
            let _ = write!(t, "[[meters]]\nid = \"{}-ess\"\nsite = \"{}-plant\"\ndescription = \"battery storage, {} kW\"\nchannels = [{}, {}]\n\n", f.tag, f.tag, f.storage_kw, energy("charge", "storage_charge", f.storage_kw * 1.5), energy("discharge", "storage_discharge", f.storage_kw * 1.5));
        }
    }
    for (id, _, peak) in HUBS {
        let _ = write!(
            t,
            "[[meters]]\nid = \"{id}-grid\"\nsite = \"{id}\"\nchannels = [{}]\n\n[[meters]]\nid = \"{id}-chargers\"\nsite = \"{id}\"\ndescription = \"sum of the hub's charger meters\"\nchannels = [\n  {},\n  {{ id = \"sessions\", carrier = \"charging_sessions\", kind = \"counter\", unit = \"session\", max_rate_per_hour = 1000 }},\n]\n\n",
            energy("import", "grid_import", peak * 2.0),
            energy("delivered", "charging_delivered", peak * 2.0)
        );
    }
    let _ = write!(
        t,
        "[[meters]]\nid = \"qh-grid\"\nsite = \"qinghe-electrolyser\"\nchannels = [{}]\n\n[[meters]]\nid = \"qh-pv\"\nsite = \"qinghe-electrolyser\"\nchannels = [{}]\n\n\
         [[meters]]\nid = \"qh-h2\"\nsite = \"qinghe-electrolyser\"\ndescription = \"hydrogen mass flow meters after the dryer and at the dispenser\"\nchannels = [\n  {{ id = \"produced\", carrier = \"hydrogen_produced\", kind = \"counter\", unit = \"kg\", max_rate_per_hour = 60 }},\n  {{ id = \"dispensed\", carrier = \"hydrogen_dispensed\", kind = \"counter\", unit = \"kg\", max_rate_per_hour = 200 }},\n]\n\n",
        energy("import", "grid_import", ELECTROLYSER_KW * 2.0),
        energy("generation", "pv_generation", ELECTROLYSER_PV_KWP * 1.5)
    );
    let _ = write!(
        t,
        "[store]\npath = \"{}\"\n\n[metrics]\nlisten = \"{listen}\"\n\n",
        dir.join("ecogate.db").display()
    );
    let _ = write!(
        t,
        "[evaluation]\nstatistics_path = \"{}\"\n\n",
        dir.join("statistics.db").display()
    );
    for (f, addr) in FACTORIES.iter().zip(modbus) {
        let mut units = vec![(
            1,
            "main",
            "{ import = \"import_kwh\", export = \"export_kwh\", power = \"power_total_w\" }",
        )];
        if f.pv_kwp > 0.0 {
            units.push((2, "pv", "{ generation = \"import_kwh\" }"));
        }
        if f.storage_kw > 0.0 {
            units.push((
                3,
                "ess",
                "{ charge = \"import_kwh\", discharge = \"export_kwh\" }",
            ));
        }
        for (unit, suffix, channels) in units {
            let _ = write!(
                t,
                "[[modbus.devices]]\nmeter = \"{}-{suffix}\"\ntcp = \"{addr}\"\nunit_id = {unit}\nprofile = \"chint-dtsu666\"\nchannels = {channels}\npoll_interval_ms = 1000\n\n",
                f.tag
            );
        }
    }
    let _ = write!(
        t,
        "# The electrolyser's grid meter speaks DL/T 645-2007 behind a serial-to-TCP server.\n\
         [[dlt645.lines]]\nid = \"qinghe-rs485\"\ntcp = \"{dlt645}\"\n\n\
         [[dlt645.meters]]\nmeter = \"qh-grid\"\nline = \"qinghe-rs485\"\naddress = \"{QH_GRID_ADDRESS}\"\npoll_interval_ms = 1000\nchannels = {{ import = \"forward_active_total\" }}\n\n"
    );
    let _ = write!(
        t,
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"ecogate-demo\"\n# rumqttd has no $SYS topics (and drops a client that subscribes to one).\nbroker_sys_topics = false\n\n\
         [[mqtt.subscriptions]]\ntopic = \"demo/grid/{{meter}}\"\ndecoder = \"json\"\nfields = {{ import = \"/kwh\" }}\ntimestamp = \"/ts\"\nstale_after_s = 60\n\n\
         [[mqtt.subscriptions]]\ntopic = \"demo/pv/{{meter}}\"\ndecoder = \"json\"\nfields = {{ generation = \"/kwh\" }}\ntimestamp = \"/ts\"\nstale_after_s = 60\n\n\
         [[mqtt.subscriptions]]\ntopic = \"demo/charging/{{meter}}\"\ndecoder = \"json\"\nfields = {{ delivered = \"/kwh\", sessions = \"/sessions\" }}\ntimestamp = \"/ts\"\nstale_after_s = 60\n\n\
         [[mqtt.subscriptions]]\ntopic = \"demo/hydrogen/{{meter}}\"\ndecoder = \"json\"\nfields = {{ produced = \"/produced_kg\", dispensed = \"/dispensed_kg\" }}\ntimestamp = \"/ts\"\nstale_after_s = 60\n"
    );
    t
}
