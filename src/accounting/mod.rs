//! Cost and usage accounting: prices, the ledger.

pub mod budget;
pub mod estimate;
pub mod ledger;
pub mod pricing;
pub mod recorder;
pub mod report;
