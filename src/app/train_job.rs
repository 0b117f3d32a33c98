//! Background work of the Train view.

/// What the background work reports to the Train view.
#[derive(Debug, Clone)]
pub enum TrainUpdate {}
