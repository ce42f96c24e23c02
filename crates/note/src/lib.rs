//! rekor-note (under construction).
