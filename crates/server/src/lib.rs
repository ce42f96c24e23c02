//! rekor-server (under construction).
