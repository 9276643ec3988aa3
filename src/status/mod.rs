//! The status page: what a park's IT staff and energy managers look at on the gateway itself,
//! in 中文 or English, served by the metrics listener (`/`, `/firm/ID`, `/meters`).
//!
//! Pure: [`model`] holds the figures (read by the application from the store, the evaluation
//! and the sources' meter health), [`render`] turns them into self-contained HTML (inline CSS
//! and SVG, no script, no CDN: a gateway is often offline) that reads on a phone.

pub mod model;
pub mod render;

pub use model::*;
