//! Background work of the Teaching view.

/// What the background work reports to the Teaching view.
#[derive(Debug, Clone)]
pub enum TeachingUpdate {}
