//! A Modbus server for tests: tokio-modbus's own server (TCP and RTU over TCP) serving a register
//! bank, with per-unit behaviours a real device shows on a bad day: silence, late answers,
//! exception responses. Counts requests per unit.

#![allow(dead_code)]

use ecogate::sources::modbus::decode::{encode, DataType, WordOrder};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_modbus::prelude::*;
use tokio_modbus::server::Service;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    Normal,
    Silent,
    Late(Duration),
    Exception(ExceptionCode),
}

/// Register tables: 0 holding, 1 input, 2 coils, 3 discrete inputs.
#[derive(Default)]
struct State {
    words: HashMap<(u8, u8, u16), u16>,
    behaviour: HashMap<u8, Behaviour>,
    requests: HashMap<u8, u64>,
    /// Arrival times (epoch ms) of every request, by unit; kept only when asked for (benches).
    arrivals: Option<HashMap<u8, Vec<i64>>>,
}

#[derive(Clone, Default)]
pub struct Bank(Arc<Mutex<State>>);

impl Bank {
    pub fn set(
        &self,
        unit: u8,
        table: u8,
        address: u16,
        value: f64,
        ty: DataType,
        order: WordOrder,
    ) {
        let words = encode(value, ty, order);
        let mut s = self.0.lock().unwrap();
        for (i, w) in words.into_iter().enumerate() {
            s.words.insert((unit, table, address + i as u16), w);
        }
    }

    pub fn behave(&self, unit: u8, b: Behaviour) {
        self.0.lock().unwrap().behaviour.insert(unit, b);
    }

    pub fn requests(&self, unit: u8) -> u64 {
        *self.0.lock().unwrap().requests.get(&unit).unwrap_or(&0)
    }

    /// Starts keeping the arrival time of every request.
    pub fn record_arrivals(&self) {
        self.0.lock().unwrap().arrivals = Some(HashMap::new());
    }

    /// Epoch milliseconds at which each request for `unit` arrived (empty unless recording).
    pub fn arrivals(&self, unit: u8) -> Vec<i64> {
        let s = self.0.lock().unwrap();
        s.arrivals
            .as_ref()
            .and_then(|a| a.get(&unit).cloned())
            .unwrap_or_default()
    }

    fn read(&self, unit: u8, table: u8, address: u16, count: u16) -> Vec<u16> {
        let s = self.0.lock().unwrap();
        (0..count)
            .map(|i| *s.words.get(&(unit, table, address + i)).unwrap_or(&0))
            .collect()
    }
}

pub struct Sim(pub Bank);

type Reply = Result<Option<Response>, ExceptionCode>;

impl Service for Sim {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let unit = req.slave;
        let bank = self.0.clone();
        let behaviour = {
            let mut s = bank.0.lock().unwrap();
            *s.requests.entry(unit).or_default() += 1;
            if let Some(a) = s.arrivals.as_mut() {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                a.entry(unit).or_default().push(now_ms);
            }
            *s.behaviour.get(&unit).unwrap_or(&Behaviour::Normal)
        };
        let response = match req.request {
            Request::ReadHoldingRegisters(a, n) => Ok(Some(Response::ReadHoldingRegisters(
                bank.read(unit, 0, a, n),
            ))),
            Request::ReadInputRegisters(a, n) => {
                Ok(Some(Response::ReadInputRegisters(bank.read(unit, 1, a, n))))
            }
            Request::ReadCoils(a, n) => Ok(Some(Response::ReadCoils(
                bank.read(unit, 2, a, n)
                    .into_iter()
                    .map(|w| w != 0)
                    .collect(),
            ))),
            Request::ReadDiscreteInputs(a, n) => Ok(Some(Response::ReadDiscreteInputs(
                bank.read(unit, 3, a, n)
                    .into_iter()
                    .map(|w| w != 0)
                    .collect(),
            ))),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        Box::pin(async move {
            match behaviour {
                Behaviour::Normal => response,
                Behaviour::Silent => Ok(None),
                Behaviour::Exception(code) => Err(code),
                Behaviour::Late(d) => {
                    tokio::time::sleep(d).await;
                    response
                }
            }
        })
    }
}

/// Starts a Modbus TCP server on `addr` (port 0 picks a free one).
pub async fn start_tcp(bank: Bank, addr: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let local = listener.local_addr().unwrap();
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let task = tokio::spawn(async move {
        let on_connected = |stream, _addr| {
            let bank = bank.clone();
            async move { Ok(Some((Sim(bank), stream))) }
        };
        let _ = server.serve(&on_connected, |_err| {}).await;
    });
    (local, task)
}

/// Starts a Modbus RTU-over-TCP server (RTU framing on a TCP socket, as serial device servers do).
pub async fn start_rtu_over_tcp(bank: Bank) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let server = tokio_modbus::server::rtu_over_tcp::Server::new(listener);
    let task = tokio::spawn(async move {
        let on_connected = |stream, _addr| {
            let bank = bank.clone();
            async move { Ok(Some((Sim(bank), stream))) }
        };
        let _ = server.serve(&on_connected, |_err| {}).await;
    });
    (local, task)
}
