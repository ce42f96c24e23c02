//! rekor-cli

fn main() {}
