//! The API's integration tests: one binary, one module per flow.

mod helpers;
mod intake;
mod logs;
mod meta;
mod review;
