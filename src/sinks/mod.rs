//! Sinks: where accounted data goes. `store` is the embedded SQLite default and the durable
//! point of the pipeline; the InfluxDB sink and its outbox join here.

pub mod store;
