//! Self-tests of the test-support crate: each helper does what the other tests rely on.

mod broker;
mod db;
mod mqtt;
mod process;
mod proxy;
