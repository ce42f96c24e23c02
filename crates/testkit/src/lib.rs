//! rekor-testkit (under construction).
