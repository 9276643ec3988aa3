//! InfluxDB v2 sink.
pub mod line_protocol;
