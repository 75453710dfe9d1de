//! What every OxiBot daemon runs on besides the wire: logs that pass a
//! redactor before they reach stderr, the periodic heap trim, text made
//! safe for a terminal, clocks without a date crate, random bytes from the kernel, and the checks of the
//! descriptors a daemon inherits, and the `--man-page` every daemon answers. Kept apart from `oxibot-proto`, which
//! holds only what crosses a socket.

pub mod clock;
pub mod heap;
pub mod inherit;
pub mod logging;
pub mod man;
pub mod printable;
pub mod random;
pub mod redact;
