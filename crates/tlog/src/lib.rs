//! rekor-tlog (under construction).
