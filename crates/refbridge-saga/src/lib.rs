#![doc = include_str!("../README.md")]

mod engine;
mod resolve;
mod retry;
pub mod steps;

pub use engine::{ACTOR, CrashPoints, Engine, EngineConfig, EngineError};
pub use retry::RetryPolicy;
pub use steps::Step;
