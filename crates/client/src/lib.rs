//! rekor-client (under construction).
