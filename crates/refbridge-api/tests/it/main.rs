//! The API's integration tests: one binary, one module per flow.

mod console;
mod contract;
mod events;
mod helpers;
mod idempotency;
mod intake;
mod logs;
mod media;
mod meta;
mod patients;
mod plans;
mod review;
mod text_fields;
mod webhooks;
