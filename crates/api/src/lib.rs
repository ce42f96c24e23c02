//! rekor-api (under construction).
