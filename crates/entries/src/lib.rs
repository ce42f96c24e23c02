//! rekor-entries (under construction).
