//! SIGINT and SIGTERM as a flag: the first one asks a campaign to stop where
//! it is (its summary printed, its report and findings written); a second
//! SIGINT or SIGTERM ends the process at once with status 130. Built on the
//! `ctrlc` crate (its `termination` feature adds SIGTERM), so no `unsafe` here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Result<Arc<AtomicBool>, String>> = OnceLock::new();

/// The flag set by SIGINT or SIGTERM; the handler is installed on the first call.
pub fn flag() -> Result<Arc<AtomicBool>, String> {
    FLAG.get_or_init(|| {
        let f = Arc::new(AtomicBool::new(false));
        let h = f.clone();
        ctrlc::set_handler(move || {
            if h.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("xsdiff: interrupted: finishing the batch in flight, then the summary (again to quit at once)");
        })
        .map_err(|e| format!("cannot install the SIGINT/SIGTERM handler: {e}"))?;
        Ok(f)
    })
    .clone()
}
