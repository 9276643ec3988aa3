//! Sinks: where accounted data goes. `store` is the embedded SQLite default and the durable
//! point of the pipeline; `influx` writes to an InfluxDB v2 API through the durable `outbox`.

pub mod inbox;
pub mod influx;
pub mod lock;
pub mod outbox;
pub mod store;
