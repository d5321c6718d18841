//! The meter registry's entry points: validating meter records from any source and
//! registering them.

pub mod import;
pub mod record;

pub use import::{ImportReport, RowError, import_file};
pub use record::{MeterRecord, validate};
