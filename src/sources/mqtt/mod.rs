//! MQTT source: subscriptions bound to meters, payload decoders, and acknowledgement only after
//! the readings are in the store.
//!
//! Layers: `config` (broker, subscriptions), `topic` (patterns with named segments), `decode`
//! (payloads -> readings, pure), `sparkplug` (Sparkplug B payloads and their aliases), `pace` (receive pacing, pure), `window`
//! (the broker's in-flight window, for group commit, pure), `client`
//! (rumqttc event loop, reconnects, acks). rumqttc's types stay in `client`.

pub mod client;
pub mod config;
pub mod connect;
pub mod decode;
pub mod health;
pub mod losses;
pub mod metrics;
pub mod pace;
pub mod probe;
pub mod puback;
pub mod sequence;
pub mod source;
pub mod sparkplug;
pub mod topic;
pub mod window;

pub use client::{spawn, MqttSource};
