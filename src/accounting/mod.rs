//! Cost and usage accounting: prices, the ledger.

pub mod audit;
pub mod ledger;
pub mod pricing;
pub mod recorder;
pub mod report;
