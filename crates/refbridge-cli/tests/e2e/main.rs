//! End-to-end tests: the API, the send workers and the ACCloud simulator together, with
//! faults. One binary, one module per flow.

mod backup;
mod bench;
mod changes;
mod chaos;
mod console;
mod faults;
mod helpers;
mod metrics;
mod multiprocess;
mod plans;
mod retention;
mod send;
mod server;
mod target;
mod webhooks;
mod workers;
