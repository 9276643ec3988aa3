//! The `[modbus]` section validated: buses, and each device's bus, profile or registers, and
//! channels bound to the meter's.

use super::*;

/// Validates the `[modbus]` section against the configured meters.
pub fn validate(v: &mut Validator<'_>, raw: &RawModbus, meters: &[Meter]) -> ModbusConfig {
    let mut buses: Vec<Bus> = Vec::new();
    let mut bus_index: HashMap<String, usize> = HashMap::new();
    for (i, b) in raw.buses.iter().enumerate() {
        let key = format!("modbus.buses[{i}]");
        if bus_index.contains_key(b.id.get_ref()) {
            v.err(
                &b.id,
                format!("{key}.id"),
                format!("duplicate bus id `{}`", b.id.get_ref()),
            );
            continue;
        }
        let transport = match b.transport.get_ref().as_str() {
            "rtu" => match &b.device {
                None => {
                    v.err(
                        &b.transport,
                        format!("{key}.device"),
                        "an RTU bus needs `device`, the serial port (e.g. /dev/ttyUSB0)",
                    );
                    None
                }
                Some(path) => {
                    let parity = match b.parity.as_ref().map(|p| p.get_ref().as_str()) {
                        None | Some("none") => Parity::None,
                        Some("even") => Parity::Even,
                        Some("odd") => Parity::Odd,
                        Some(other) => {
                            v.err(
                                b.parity.as_ref().unwrap(),
                                format!("{key}.parity"),
                                format!("parity `{other}`: expected none, even or odd"),
                            );
                            Parity::None
                        }
                    };
                    let data_bits = b.data_bits.as_ref().map_or(8, |d| *d.get_ref());
                    if !(5..=8).contains(&data_bits) {
                        v.err(
                            b.data_bits.as_ref().unwrap(),
                            format!("{key}.data_bits"),
                            "must be 5 to 8",
                        );
                    }
                    let stop_bits = b.stop_bits.as_ref().map_or(1, |d| *d.get_ref());
                    if !(1..=2).contains(&stop_bits) {
                        v.err(
                            b.stop_bits.as_ref().unwrap(),
                            format!("{key}.stop_bits"),
                            "must be 1 or 2",
                        );
                    }
                    Some(Transport::Rtu(Serial {
                        path: PathBuf::from(path.get_ref()),
                        baud: b.baud.as_ref().map_or(9600, |d| *d.get_ref()),
                        parity,
                        data_bits,
                        stop_bits,
                    }))
                }
            },
            "rtu_over_tcp" => match &b.address {
                None => {
                    v.err(&b.transport, format!("{key}.address"), "an RTU-over-TCP bus needs `address` (host:port of the serial device server)");
                    None
                }
                Some(a) => parse_addr(v, a, &format!("{key}.address")).map(Transport::RtuOverTcp),
            },
            "tcp" => match &b.address {
                None => {
                    v.err(
                        &b.transport,
                        format!("{key}.address"),
                        "a TCP bus needs `address` (host:port)",
                    );
                    None
                }
                Some(a) => parse_addr(v, a, &format!("{key}.address")).map(Transport::Tcp),
            },
            other => {
                v.err(
                    &b.transport,
                    format!("{key}.transport"),
                    format!("transport `{other}`: expected rtu, rtu_over_tcp or tcp"),
                );
                None
            }
        };
        if let Some(transport) = transport {
            bus_index.insert(b.id.get_ref().clone(), buses.len());
            buses.push(Bus {
                id: b.id.get_ref().clone(),
                transport,
                devices: Vec::new(),
            });
        }
    }
    let profiles = all_profiles(v, raw);
    let mut seen_meters: HashMap<String, String> = HashMap::new();
    let mut line_shards = crate::config::shard::LineShards::default();
    for (i, d) in raw.devices.iter().enumerate() {
        let key = format!("modbus.devices[{i}]");
        let Some(meter) = meters.iter().find(|m| &m.id == d.meter.get_ref()) else {
            v.err(
                &d.meter,
                format!("{key}.meter"),
                format!(
                    "unknown meter `{}`: no [[meters]] has this id",
                    d.meter.get_ref()
                ),
            );
            continue;
        };
        if let Some(first) = seen_meters.insert(meter.id.clone(), key.clone()) {
            v.err(
                &d.meter,
                format!("{key}.meter"),
                format!("meter `{}` is already polled by {first}", meter.id),
            );
        }
        let bus = match (&d.bus, &d.tcp) {
            (Some(b), None) => match bus_index.get(b.get_ref()) {
                Some(i) => Some(*i),
                None => {
                    v.err(
                        b,
                        format!("{key}.bus"),
                        format!(
                            "unknown bus `{}`: no [[modbus.buses]] has this id",
                            b.get_ref()
                        ),
                    );
                    None
                }
            },
            (None, Some(addr)) => parse_addr(v, addr, &format!("{key}.tcp")).map(|a| {
                let id = format!("tcp://{a}");
                *bus_index.entry(id.clone()).or_insert_with(|| {
                    buses.push(Bus {
                        id,
                        transport: Transport::Tcp(a),
                        devices: Vec::new(),
                    });
                    buses.len() - 1
                })
            }),
            (Some(b), Some(_)) => {
                v.err(b, format!("{key}.bus"), "give `bus` or `tcp`, not both");
                None
            }
            (None, None) => {
                v.err(
                    &d.meter,
                    format!("{key}.bus"),
                    "a device needs `bus` (a [[modbus.buses]] id) or `tcp` (host:port)",
                );
                None
            }
        };
        let device = device(v, d, meter, &key, &profiles);
        if let (Some(bus), Some(device)) = (bus, device) {
            let b = &mut buses[bus];
            if let Some(msg) = line_shards.check(&b.id, meter) {
                v.err(&d.meter, format!("{key}.meter"), msg);
            }
            if let Some(other) = b.devices.iter().find(|o| o.unit_id == device.unit_id) {
                let msg = format!(
                    "unit id {} is already used on bus `{}` by meter `{}`",
                    device.unit_id, b.id, other.meter
                );
                match &d.unit_id {
                    Some(u) => v.err(u, format!("{key}.unit_id"), msg),
                    None => v.err(&d.meter, format!("{key}.unit_id"), msg),
                }
            }
            b.devices.push(std::sync::Arc::new(device));
        }
    }
    buses.retain(|b| !b.devices.is_empty());
    ModbusConfig { buses }
}

fn device(
    v: &mut Validator<'_>,
    d: &RawDevice,
    meter: &Meter,
    key: &str,
    profiles: &HashMap<String, Profile>,
) -> Option<Device> {
    let before = v.error_count();
    let unit_id = d.unit_id.as_ref().map_or(1, |u| *u.get_ref());
    if unit_id == 0 || unit_id > 247 {
        v.err(
            d.unit_id.as_ref().unwrap(),
            format!("{key}.unit_id"),
            "must be 1 to 247 (0 is broadcast)",
        );
    }
    let poll_interval_ms = d.poll_interval_ms.as_ref().map_or(1000, |p| *p.get_ref());
    if !(100..=86_400_000).contains(&poll_interval_ms) {
        v.err(
            d.poll_interval_ms.as_ref().unwrap(),
            format!("{key}.poll_interval_ms"),
            "must be 100 ms to 1 day",
        );
    }
    let timeout_ms = d.timeout_ms.as_ref().map_or(1000, |p| *p.get_ref());
    if timeout_ms == 0 || timeout_ms > 60_000 {
        v.err(
            d.timeout_ms.as_ref().unwrap(),
            format!("{key}.timeout_ms"),
            "must be 1 to 60000",
        );
    }
    let retries = d.retries.as_ref().map_or(1, |r| *r.get_ref());
    if retries > 10 {
        v.err(
            d.retries.as_ref().unwrap(),
            format!("{key}.retries"),
            "at most 10",
        );
    }
    let max_per_request = d
        .max_registers_per_request
        .as_ref()
        .map_or(125, |m| *m.get_ref());
    if max_per_request == 0 || max_per_request > 125 {
        v.err(
            d.max_registers_per_request.as_ref().unwrap(),
            format!("{key}.max_registers_per_request"),
            "must be 1 to 125",
        );
    }
    let limits = Limits {
        max_per_request,
        max_gap: d.max_gap_registers.as_ref().map_or(10, |m| *m.get_ref()),
        single: d
            .single_register_requests
            .as_ref()
            .is_some_and(|s| *s.get_ref()),
    };
    let ct = d
        .ct_ratio
        .as_ref()
        .and_then(|r| v.positive(r, &format!("{key}.ct_ratio")))
        .unwrap_or(1.0);
    let pt = d
        .pt_ratio
        .as_ref()
        .and_then(|r| v.positive(r, &format!("{key}.pt_ratio")))
        .unwrap_or(1.0);
    let apply_ratios = d.apply_ratios.as_ref().is_some_and(|a| *a.get_ref());
    let multiplier = |r: Ratio| {
        if !apply_ratios {
            return 1.0;
        }
        match r {
            Ratio::None => 1.0,
            Ratio::Ct => ct,
            Ratio::Pt => pt,
            Ratio::CtPt => ct * pt,
        }
    };
    let function_override = d.function.as_ref().and_then(|f| {
        let parsed = Function::parse(f.get_ref());
        if parsed.is_none() {
            v.err(
                f,
                format!("{key}.function"),
                format!(
                    "function `{}`: expected holding, input, coil or discrete_input",
                    f.get_ref()
                ),
            );
        }
        parsed
    });
    let mut points: Vec<Point> = Vec::new();
    let channel_unit = |name: &str| meter.channels.iter().find(|c| c.id == name).map(|c| c.unit);
    let check_channel = |v: &mut Validator<'_>, at: &S<String>, ckey: String, unit: Unit| -> bool {
        match channel_unit(at.get_ref()) {
            None => {
                v.err(
                    at,
                    ckey,
                    format!("meter `{}` has no channel `{}`", meter.id, at.get_ref()),
                );
                false
            }
            Some(cu) if cu.dimension != unit.dimension => {
                v.err(
                    at,
                    ckey,
                    format!(
                        "the register's unit {unit} ({}) does not fit channel `{}` in {cu} ({})",
                        unit.dimension,
                        at.get_ref(),
                        cu.dimension
                    ),
                );
                false
            }
            Some(_) => true,
        }
    };
    if let Some(name) = &d.profile {
        match profiles.get(name.get_ref()) {
            None => {
                let mut names: Vec<_> = profiles.keys().map(|n| n.as_str()).collect();
                names.sort();
                v.err(
                    name,
                    format!("{key}.profile"),
                    format!(
                        "unknown profile `{}`: known profiles are {}",
                        name.get_ref(),
                        names.join(", ")
                    ),
                );
            }
            Some(p) => {
                // Without `channels`, every meter channel named like a profile point reads it.
                let by_name: BTreeMap<String, S<String>> = meter
                    .channels
                    .iter()
                    .filter(|c| p.points.contains_key(&c.id))
                    .map(|c| (c.id.clone(), S::new(name.span(), c.id.clone())))
                    .collect();
                let mapping = if d.channels.is_empty() {
                    &by_name
                } else {
                    &d.channels
                };
                if mapping.is_empty() {
                    let names: Vec<_> = p.points.keys().map(|k| k.as_str()).collect();
                    v.err(
                        name,
                        format!("{key}.channels"),
                        format!(
                            "no channel of meter `{}` is named after a point of profile `{}` ({}): name them so, or map them with channels = {{ import = \"import_kwh\" }}",
                            meter.id,
                            p.name,
                            names.join(", ")
                        ),
                    );
                }
                for (channel, point_name) in mapping {
                    let ckey = format!("{key}.channels.{channel}");
                    let Some(pp) = p.points.get(point_name.get_ref()) else {
                        let names: Vec<_> = p.points.keys().map(|k| k.as_str()).collect();
                        v.err(
                            point_name,
                            ckey,
                            format!(
                                "profile `{}` has no point `{}`: it has {}",
                                p.name,
                                point_name.get_ref(),
                                names.join(", ")
                            ),
                        );
                        continue;
                    };
                    let at = S::new(point_name.span(), channel.clone());
                    if !check_channel(v, &at, ckey, pp.unit) {
                        continue;
                    }
                    points.push(Point {
                        channel: channel.clone(),
                        span: Span {
                            function: function_override.unwrap_or(pp.function),
                            address: pp.address,
                            width: pp.data_type.width(),
                        },
                        data_type: pp.data_type,
                        word_order: pp.word_order,
                        scale: pp.scale,
                        offset: 0.0,
                        multiplier: multiplier(pp.ratio),
                        unit: pp.unit,
                        min: None,
                        max: None,
                    });
                }
            }
        }
    } else if !d.channels.is_empty() {
        let (_, first) = d.channels.iter().next().unwrap();
        v.err(
            first,
            format!("{key}.channels"),
            "`channels` maps to profile points: give `profile`, or use [[registers]]",
        );
    }
    for (j, r) in d.registers.iter().enumerate() {
        let rkey = format!("{key}.registers[{j}]");
        let Some(function) = Function::parse(r.function.get_ref()) else {
            v.err(
                &r.function,
                format!("{rkey}.function"),
                format!(
                    "function `{}`: expected holding, input, coil or discrete_input",
                    r.function.get_ref()
                ),
            );
            continue;
        };
        let base = *r.address_base.get_ref();
        if base > 1 {
            v.err(&r.address_base, format!("{rkey}.address_base"), "must be 0 (address as on the wire) or 1 (documented register number counted from 1)");
            continue;
        }
        let Some(address) = r
            .address
            .get_ref()
            .checked_sub(base as u32)
            .and_then(|a| u16::try_from(a).ok())
        else {
            v.err(
                &r.address,
                format!("{rkey}.address"),
                format!(
                    "address {} with address_base {base} is outside 0-65535 on the wire",
                    r.address.get_ref()
                ),
            );
            continue;
        };
        let Some(data_type) = DataType::parse(r.data_type.get_ref()) else {
            let names: Vec<_> = DataType::NAMES.iter().map(|(n, _)| *n).collect();
            v.err(
                &r.data_type,
                format!("{rkey}.type"),
                format!(
                    "type `{}`: expected one of {}",
                    r.data_type.get_ref(),
                    names.join(", ")
                ),
            );
            continue;
        };
        let is_bit = matches!(function, Function::Coil | Function::DiscreteInput);
        if is_bit != (data_type == DataType::Bool) {
            v.err(
                &r.data_type,
                format!("{rkey}.type"),
                "coils and discrete inputs are `bool`; registers are not",
            );
            continue;
        }
        if address as u32 + data_type.width() as u32 > 65_536 {
            v.err(
                &r.address,
                format!("{rkey}.address"),
                "the value runs past register 65535",
            );
            continue;
        }
        let word_order = match &r.word_order {
            None => WordOrder::Abcd,
            Some(w) => match WordOrder::parse(w.get_ref()) {
                Some(o) => o,
                None => {
                    v.err(
                        w,
                        format!("{rkey}.word_order"),
                        format!(
                            "word order `{}`: expected ABCD, CDAB, BADC or DCBA",
                            w.get_ref()
                        ),
                    );
                    continue;
                }
            },
        };
        let Some(unit) = Unit::parse(r.unit.get_ref()) else {
            v.err(
                &r.unit,
                format!("{rkey}.unit"),
                format!("unknown unit `{}`", r.unit.get_ref()),
            );
            continue;
        };
        let ratio = match &r.ratio {
            None => Ratio::None,
            Some(x) => match Ratio::parse(x.get_ref()) {
                Some(x) => x,
                None => {
                    v.err(x, format!("{rkey}.ratio"), "expected none, ct, pt or ct_pt");
                    continue;
                }
            },
        };
        if !check_channel(v, &r.channel, format!("{rkey}.channel"), unit) {
            continue;
        }
        let finite = |v: &mut Validator<'_>, x: &Option<S<f64>>, k: &str| -> Option<f64> {
            let s = x.as_ref()?;
            if s.get_ref().is_finite() {
                Some(*s.get_ref())
            } else {
                v.err(s, format!("{rkey}.{k}"), "must be a finite number");
                None
            }
        };
        let scale = finite(v, &r.scale, "scale").unwrap_or(1.0);
        let offset = finite(v, &r.offset, "offset").unwrap_or(0.0);
        let min = finite(v, &r.min, "min");
        let max = finite(v, &r.max, "max");
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                v.err(
                    r.min.as_ref().unwrap(),
                    format!("{rkey}.min"),
                    format!("min {lo} is above max {hi}"),
                );
            }
        }
        points.push(Point {
            channel: r.channel.get_ref().clone(),
            span: Span {
                function,
                address,
                width: data_type.width(),
            },
            data_type,
            word_order,
            scale,
            offset,
            multiplier: multiplier(ratio),
            unit,
            min,
            max,
        });
    }
    let mut seen = HashMap::new();
    for p in &points {
        if seen.insert(p.channel.clone(), ()).is_some() {
            v.err(
                &d.meter,
                key.to_string(),
                format!("channel `{}` is read from two registers", p.channel),
            );
        }
    }
    // Two values sharing a register (a float32 at input 72 and another at 73) decode garbage
    // from one of them: a typo in an address, never a layout a meter has.
    let mut by_start: Vec<&Point> = points.iter().collect();
    by_start.sort_by_key(|p| (p.span.function.name(), p.span.address));
    for pair in by_start.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.span.function == b.span.function
            && (a.span.address as u32 + a.span.width as u32) > b.span.address as u32
        {
            v.err(
                &d.meter,
                key.to_string(),
                format!(
                    "channels `{}` ({} registers {}-{}) and `{}` ({} registers {}-{}) overlap: check their addresses against the meter's register map",
                    a.channel,
                    a.span.function.name(),
                    a.span.address,
                    a.span.address as u32 + a.span.width as u32 - 1,
                    b.channel,
                    b.span.function.name(),
                    b.span.address,
                    b.span.address as u32 + b.span.width as u32 - 1,
                ),
            );
        }
    }
    if points.is_empty() && v.error_count() == before {
        v.err(
            &d.meter,
            key.to_string(),
            "the device reads nothing: give `profile` with `channels`, or [[registers]]",
        );
    }
    (v.error_count() == before).then_some(Device {
        meter: meter.id.clone(),
        unit_id,
        poll_interval_ms,
        timeout_ms,
        retries,
        limits,
        points,
    })
}
