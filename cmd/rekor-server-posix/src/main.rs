//! rekor-server-posix

fn main() {}
