//! Integration tests of the ACCloud simulator: one binary, one module per area.

mod contract;
mod control;
mod errors;
mod faults;
mod helpers;
mod rules;
mod schema;
