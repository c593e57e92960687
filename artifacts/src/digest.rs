//! SHA-256 for what the CLI hashes on every deploy (the zip's `CodeSha256`, image digests,
//! the packaging cache key). `ring`'s implementation is assembly, so it is fast even in the
//! unoptimised build `cargo xtask` runs as; a pure-Rust digest in a debug build cost the user
//! a visible fraction of a second per multi-megabyte binary.

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_answer() {
        assert_eq!(
            hex::encode(super::sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
