#![doc = include_str!("../README.md")]

mod classify;
mod engine;
mod resolve;
mod retry;
pub mod steps;
pub mod webhooks;

pub use engine::{ACTOR, CrashPoints, Engine, EngineConfig, EngineError};
pub use resolve::Resolver;
pub use retry::RetryPolicy;
pub use webhooks::{Deliverer, DeliveryConfig};
