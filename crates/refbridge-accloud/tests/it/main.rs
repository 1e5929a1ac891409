//! Integration tests: the client against a real HTTP peer on a port-0 listener.

mod attachments;
mod faults;
mod helpers;
mod lookups;
mod requests;
mod samples;
