//! Who can open what: the key sources a job holds (`unlock`: a password, the recovery key, the
//! OS keychain, a signed-in super admin's key) and how a repository is opened with them, and key
//! custody (`custody`: repositories sealed to the super admins, each home's writer key, the
//! writers a repository approves). The keychain itself (`crate::secrets`) and a home's writer key
//! (`crate::writers`) sit lower, because storage and the catalog's context use them.

pub mod custody;
pub mod unlock;
