//! The privacy policy. What it decides is the `camagent-policy` crate (`crates/policy`, no
//! I/O): the policy model, the gate, transforms, pseudonyms, secrets, the consent ledger and
//! the privacy label. What of it lives on disk is here: the consent ledger's file, the
//! pseudonym key's file and the disclosure log.

pub use camagent_policy::*;

pub mod disclosure;
pub mod key_file;
pub mod ledger_file;

pub use key_file::PseudonymKeyError;

/// The consent ledger and its file.
pub mod consent {
    pub use super::ledger_file::LedgerFile;
    pub use camagent_policy::consent::*;
}
