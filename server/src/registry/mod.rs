//! The meter registry's entry points: validating meter records from any source and
//! registering them.

pub mod deletion;
pub mod import;
pub mod lifecycle;
pub mod read;
pub mod record;
pub mod rows;

pub use import::{ImportReport, import_file};
pub use record::{MeterRecord, validate};
pub use rows::RowError;
