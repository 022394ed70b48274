//! Cost and usage accounting: prices, the ledger, budgets, reports and the audit.

pub mod audit;
pub mod budget;
pub mod dashboard;
pub mod estimate;
pub mod ledger;
pub mod pricing;
pub mod recorder;
pub mod report;
