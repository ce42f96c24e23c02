//! Proof verification, exactly as RFC 9162 §2.1.3.2 and §2.1.4.2 describe it.

use crate::{Hash, LeafIndex, ProofError, TreeSize, empty_root, node_hash};

/// Verifies that `proof` shows leaf hash `leaf` at position `index` in the tree of `size`
/// leaves with root `root` (RFC 9162 §2.1.3.2).
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] if `index >= size` (so always for size 0);
/// [`ProofError::ProofTooLong`] or [`ProofError::ProofTooShort`] if the proof does not have
/// the length the tree shape requires; [`ProofError::RootMismatch`] if it leads elsewhere.
pub fn verify_inclusion(
    leaf: &Hash,
    index: LeafIndex,
    size: TreeSize,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1.
    if index.get() >= size.get() {
        return Err(ProofError::IndexOutOfRange {
            index: index.get(),
            size: size.get(),
        });
    }
    // Steps 2 and 3.
    let mut f_n = index.get();
    let mut s_n = size.get() - 1;
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::ProofTooLong { len: proof.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    if s_n != 0 {
        return Err(ProofError::ProofTooShort { len: proof.len() });
    }
    if r != *root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            computed: r,
        });
    }
    Ok(())
}

/// Verifies that `proof` shows the tree of `old` leaves with root `old_root` to be a prefix of
/// the tree of `new` leaves with root `new_root` (RFC 9162 §2.1.4.2).
///
/// RFC 9162 defines the algorithm for `0 < old < new`. The other cases follow from the
/// definitions: equal sizes are consistent iff the roots are equal, with an empty proof; the
/// empty tree (whose root is SHA-256 of the empty string) is a prefix of every tree, with an
/// empty proof.
///
/// # Errors
///
/// [`ProofError::SizeOrder`] if `old > new`; [`ProofError::UnexpectedProof`] for a non-empty
/// proof in the trivial cases; [`ProofError::EmptyProof`], [`ProofError::ProofTooLong`] or
/// [`ProofError::ProofTooShort`] for a proof of the wrong length;
/// [`ProofError::OldRootMismatch`] or [`ProofError::RootMismatch`] if a root differs.
pub fn verify_consistency(
    old: TreeSize,
    new: TreeSize,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let (first, second) = (old.get(), new.get());
    if first > second {
        return Err(ProofError::SizeOrder {
            old: first,
            new: second,
        });
    }
    if first == 0 || first == second {
        if !proof.is_empty() {
            return Err(ProofError::UnexpectedProof { len: proof.len() });
        }
        // The old root an empty proof implies: the empty tree's root, or the new root when
        // the sizes are equal.
        let implied_old = if first == 0 { empty_root() } else { *new_root };
        if *old_root != implied_old {
            return Err(ProofError::OldRootMismatch {
                expected: *old_root,
                computed: implied_old,
            });
        }
        if second == 0 && *new_root != empty_root() {
            return Err(ProofError::RootMismatch {
                expected: *new_root,
                computed: empty_root(),
            });
        }
        return Ok(());
    }
    // Step 1.
    let Some((head, tail)) = proof.split_first() else {
        return Err(ProofError::EmptyProof);
    };
    // Step 2: if first is an exact power of 2, the path starts with first_hash.
    let (start, rest) = if first.is_power_of_two() {
        (old_root, proof)
    } else {
        (head, tail)
    };
    // Step 3.
    let mut f_n = first - 1;
    let mut s_n = second - 1;
    // Step 4.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    let mut f_r = *start;
    let mut s_r = *start;
    // Step 6.
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::ProofTooLong { len: proof.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 7.
    if s_n != 0 {
        return Err(ProofError::ProofTooShort { len: proof.len() });
    }
    if f_r != *old_root {
        return Err(ProofError::OldRootMismatch {
            expected: *old_root,
            computed: f_r,
        });
    }
    if s_r != *new_root {
        return Err(ProofError::RootMismatch {
            expected: *new_root,
            computed: s_r,
        });
    }
    Ok(())
}
