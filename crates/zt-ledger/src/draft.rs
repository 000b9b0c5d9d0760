//! What a caller hands the ledger: a record without its place in the chain. The type and its
//! constructors live in `zt-contract` beside the record body they become.

pub use zt_contract::RecordDraft;
