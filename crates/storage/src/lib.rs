//! rekor-storage (under construction).
