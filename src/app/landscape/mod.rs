//! The Landscape view: the held-out loss on the plane through the base and two
//! chosen experts, filled in coarse to fine as the background sweep scores it,
//! with contour lines, a colour bar, the base, the experts (projected) and the
//! current merge marked. Clicking or dragging on the map sets the merge
//! weights to that point's, so map and sliders are one control.
//!
//! - [`state`]: settings, the sweep as it is scored, the result.
//! - [`page`]: the page: settings, map, readouts, merged preview, export.
//! - [`map`]: the map's geometry and drawing.
//! - [`job`]: the computation on its own thread.

pub mod job;
pub mod map;
pub mod page;
pub mod state;

pub use map::{MAP_LABEL, MapFrame, merge_point, point_weights};
pub use page::landscape_page;
pub use state::{LandscapeAction, LandscapeState};
