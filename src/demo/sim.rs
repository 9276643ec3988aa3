//! The simulated meters' state: cumulative registers integrated from the park's curves, the
//! Modbus register banks the factory gateways serve, and the MQTT messages the hubs and the
//! hydrogen site publish.

use super::park::{self, FACTORIES, HUBS};
use crate::sources::modbus::decode::{encode, DataType, WordOrder};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};

/// Holding registers by (unit id, address), as one gateway serves them.
#[derive(Debug, Clone, Default)]
pub struct Bank(Arc<Mutex<HashMap<(u8, u16), u16>>>);

impl Bank {
    fn set_f32(&self, unit: u8, address: u16, value: f64) {
        let words = encode(value, DataType::F32, WordOrder::Abcd);
        let mut regs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (i, w) in words.into_iter().enumerate() {
            regs.insert((unit, address + i as u16), w);
        }
    }

    fn read(&self, unit: u8, address: u16, count: u16) -> Option<Vec<u16>> {
        let regs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A unit id the gateway does not have stays silent, as on a real RS-485 line.
        if !regs.keys().any(|(u, _)| *u == unit) {
            return None;
        }
        Some(
            (0..count)
                .map(|i| *regs.get(&(unit, address.wrapping_add(i))).unwrap_or(&0))
                .collect(),
        )
    }
}

/// A factory gateway: Modbus TCP in front of its meters' unit ids.
pub struct Gateway(pub Bank);

impl tokio_modbus::server::Service for Gateway {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let answer = match req.request {
            Request::ReadHoldingRegisters(a, n) => match self.0.read(req.slave, a, n) {
                Some(words) => Ok(Some(Response::ReadHoldingRegisters(words))),
                None => Ok(None),
            },
            _ => Err(ExceptionCode::IllegalFunction),
        };
        Box::pin(std::future::ready(answer))
    }
}

#[derive(Debug, Clone, Default)]
struct FactoryCounters {
    import_kwh: f64,
    export_kwh: f64,
    pv_kwh: f64,
    charge_kwh: f64,
    discharge_kwh: f64,
    power_kw: f64,
}

#[derive(Debug, Clone, Default)]
struct HubCounters {
    grid_kwh: f64,
    delivered_kwh: f64,
    sessions: f64,
}

/// Every simulated register, advanced in simulated time.
#[derive(Debug)]
pub struct Park {
    tz: chrono_tz::Tz,
    at_ms: i64,
    factories: Vec<FactoryCounters>,
    hubs: Vec<HubCounters>,
    h2_grid_kwh: f64,
    h2_pv_kwh: f64,
    h2_produced_kg: f64,
    h2_dispensed_kg: f64,
}

/// Curves are sampled at most a simulated minute apart.
const STEP_MS: i64 = 60_000;

impl Park {
    pub fn new(start_ms: i64, tz: chrono_tz::Tz) -> Park {
        Park {
            tz,
            at_ms: start_ms,
            factories: (0..FACTORIES.len())
                .map(|i| FactoryCounters {
                    import_kwh: 10_000.0 + 1_000.0 * i as f64,
                    export_kwh: 100.0,
                    pv_kwh: 2_000.0,
                    charge_kwh: 500.0,
                    discharge_kwh: 450.0,
                    power_kw: 0.0,
                })
                .collect(),
            hubs: vec![
                HubCounters {
                    grid_kwh: 5_000.0,
                    delivered_kwh: 4_600.0,
                    sessions: 180.0,
                };
                HUBS.len()
            ],
            h2_grid_kwh: 20_000.0,
            h2_pv_kwh: 3_000.0,
            h2_produced_kg: 400.0,
            h2_dispensed_kg: 350.0,
        }
    }

    pub fn at_ms(&self) -> i64 {
        self.at_ms
    }

    /// Integrates every curve up to `to_ms` (never backwards).
    pub fn advance(&mut self, to_ms: i64) {
        let tz = self.tz;
        while self.at_ms < to_ms {
            let next = (self.at_ms + STEP_MS).min(to_ms);
            let t = self.at_ms;
            let h = (next - t) as f64 / 3_600_000.0;
            for (i, (f, c)) in FACTORIES.iter().zip(&mut self.factories).enumerate() {
                let load = park::factory_load_kw(f, i as u32, t, tz);
                let pv = park::pv_kw(f.pv_kwp, 100 + i as u32, t, tz);
                let (charge, discharge) = park::storage_kw(f.storage_kw, t, tz);
                let net = load + charge - pv - discharge;
                c.import_kwh += net.max(0.0) * h;
                c.export_kwh += (-net).max(0.0) * h;
                c.pv_kwh += pv * h;
                c.charge_kwh += charge * h;
                c.discharge_kwh += discharge * h;
                c.power_kw = net;
            }
            for (i, ((_, _, peak), c)) in HUBS.iter().zip(&mut self.hubs).enumerate() {
                let delivered = park::charging_kw(*peak, 200 + i as u32, t, tz);
                c.delivered_kwh += delivered * h;
                // 7 % lost in the chargers and cables; a session delivers about 25 kWh.
                c.grid_kwh += delivered / 0.93 * h;
                c.sessions += delivered * h / 25.0;
            }
            let electrolyser = park::electrolyser_kw(park::ELECTROLYSER_KW, t, tz);
            let pv = park::pv_kw(park::ELECTROLYSER_PV_KWP, 300, t, tz);
            self.h2_grid_kwh += (electrolyser - pv).max(0.0) * h;
            self.h2_pv_kwh += pv * h;
            let produced = electrolyser / park::KWH_PER_KG_H2 * h;
            self.h2_produced_kg += produced;
            self.h2_dispensed_kg += produced * 0.9;
            self.at_ms = next;
        }
    }

    /// Writes the factories' registers into their gateways' banks (CHINT DTSU666 map: f32
    /// import at 0x101E, export at 0x1028, total power at 0x2012 in 0.1 W).
    pub fn write_banks(&self, banks: &[Bank]) {
        for ((f, c), bank) in FACTORIES.iter().zip(&self.factories).zip(banks) {
            bank.set_f32(1, 0x101E, c.import_kwh);
            bank.set_f32(1, 0x1028, c.export_kwh);
            bank.set_f32(1, 0x2012, c.power_kw * 1000.0 * 10.0);
            if f.pv_kwp > 0.0 {
                bank.set_f32(2, 0x101E, c.pv_kwh);
                bank.set_f32(2, 0x1028, 0.0);
            }
            if f.storage_kw > 0.0 {
                bank.set_f32(3, 0x101E, c.charge_kwh);
                bank.set_f32(3, 0x1028, c.discharge_kwh);
            }
        }
    }

    /// The hydrogen site's grid meter, a DL/T 645 meter: its forward active energy register.
    pub fn write_dlt645(&self, line: &crate::sources::dlt645::sim::SimLine) {
        let mut meters = line.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = meters.first_mut() {
            m.set_energy(self.h2_grid_kwh);
        }
    }

    /// The MQTT messages of this instant: (topic, JSON payload with the simulated time).
    pub fn messages(&self) -> Vec<(String, String)> {
        let ts = self.at_ms;
        let mut out = Vec::new();
        for ((id, _, _), c) in HUBS.iter().zip(&self.hubs) {
            out.push((
                format!("demo/grid/{id}-grid"),
                format!("{{\"ts\":{ts},\"kwh\":{:.3}}}", c.grid_kwh),
            ));
            out.push((
                format!("demo/charging/{id}-chargers"),
                format!(
                    "{{\"ts\":{ts},\"kwh\":{:.3},\"sessions\":{}}}",
                    c.delivered_kwh,
                    c.sessions.floor()
                ),
            ));
        }
        out.push((
            "demo/pv/qh-pv".into(),
            format!("{{\"ts\":{ts},\"kwh\":{:.3}}}", self.h2_pv_kwh),
        ));
        out.push((
            "demo/hydrogen/qh-h2".into(),
            format!(
                "{{\"ts\":{ts},\"produced_kg\":{:.3},\"dispensed_kg\":{:.3}}}",
                self.h2_produced_kg, self.h2_dispensed_kg
            ),
        ));
        out
    }
}
