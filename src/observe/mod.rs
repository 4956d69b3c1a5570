//! What the people who run the server see of it: every request's id,
//! time and error line (`request`), the log lines and their format
//! (`logging`), and the Prometheus metrics (`metrics`). Every layer above
//! records through these; none of them knows the application.

pub mod logging;
pub mod metrics;
pub mod request;

pub use self::request::{Observe, ObserveLayer};
