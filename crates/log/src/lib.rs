//! rekor-log (under construction).
