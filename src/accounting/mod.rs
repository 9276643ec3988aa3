//! The accounting core: counters, carbon and coal-equivalent accounting, windows and derived
//! indicators. Pure code with no I/O, so that it can be tested exhaustively; the pipeline feeds
//! it readings and commits what it returns.

pub mod batch;
pub mod counter;
pub mod entity;
pub mod indicators;
pub mod ledger;
pub mod metric;
pub mod span;
pub mod split;
pub mod tou;
pub mod window;

pub use ledger::{Accountant, AggKey, Batch, Entity};
