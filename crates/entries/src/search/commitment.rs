//! The search-index commitment: a signed statement of which entries of a log's first N carry
//! which search terms, that lets a client check a search answer left nothing out.
//!
//! The postings of the first N entries, one `(term prefix, entry index)` pair per term an
//! entry carries ([`term_prefix`] is the first 8 bytes of [`SearchTerm::index_key`]), are
//! split into `2^bits` buckets by the prefix's top `bits` bits. A bucket's content is its
//! postings in ascending order, each as 16 bytes (prefix and index, both big-endian); its leaf
//! hash is the RFC 6962 leaf hash of that content. The index root is the RFC 6962 root of the
//! `2^bits` leaf hashes in bucket order. The log signs, with its checkpoint key, a note whose
//! body is [`IndexCommitment::to_text`]:
//!
//! ```text
//! <origin>/search-index/v1
//! <N>
//! <base64 root of the log's first N entries>
//! <bits>
//! <base64 index root>
//! <number of postings>
//! ```
//!
//! The first line differs from the log's origin, so the note can never pass for a checkpoint.
//! To prove a search answer complete, the log sends the bucket of the term's prefix and its
//! inclusion proof; [`verify_bucket`] checks them and returns every index whose posting has
//! the term's prefix. An entry among them that the answer lacks must be shown not to carry the
//! term (a prefix shared by chance); any other is an entry left out.
//!
//! What the commitment does not prove by itself is that the index is the one the log implies:
//! anyone holding the entry bundles can rebuild it ([`BucketTree::from_postings`]) and compare
//! roots, as monitors compare checkpoints.

use aws_lc_rs::digest::{Context, SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekor_tlog::{Hash, LeafIndex, TreeSize, node_hash, verify_inclusion};

use super::SearchTerm;

/// What follows the origin on a commitment's first line.
pub const COMMITMENT_SUFFIX: &str = "/search-index/v1";

/// The most bucket bits a commitment may use (16M buckets).
pub const MAX_BUCKET_BITS: u8 = 24;

/// The bytes of one posting in a bucket: the term prefix and the entry index, big-endian.
pub const POSTING_LEN: usize = 16;

/// The entries per bucket [`bucket_bits_for`] aims at (a few hundred postings, a few KiB).
pub const ENTRIES_PER_BUCKET: u64 = 128;

/// The most bucket bits [`bucket_bits_for`] chooses: a million buckets, 64 MiB of tree.
pub const MAX_CHOSEN_BUCKET_BITS: u8 = 20;

/// Why a commitment or a bucket proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitmentError {
    /// The note body is not a commitment.
    #[error("not a search-index commitment: {0}")]
    Malformed(&'static str),
    /// The commitment is for another log.
    #[error("the commitment names origin {found:?}, not {expected:?}")]
    WrongOrigin {
        /// The log's origin.
        expected: String,
        /// The origin the commitment names.
        found: String,
    },
    /// The bucket is not the term's, or its content is malformed.
    #[error("bucket {bucket}: {reason}")]
    BadBucket {
        /// The bucket.
        bucket: u64,
        /// What is wrong.
        reason: String,
    },
    /// The bucket's proof does not lead to the index root.
    #[error("bucket {bucket} is not the one the index root commits to: {reason}")]
    NotCommitted {
        /// The bucket.
        bucket: u64,
        /// The proof failure.
        reason: String,
    },
}

/// A commitment's body, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexCommitment {
    /// The log's origin.
    pub origin: String,
    /// The log size the index covers: entries `0..log_size`.
    pub log_size: u64,
    /// The root of the log's first `log_size` entries.
    pub log_root: Hash,
    /// Bucket bits: there are `2^bucket_bits` buckets.
    pub bucket_bits: u8,
    /// The root over the buckets' leaf hashes.
    pub index_root: Hash,
    /// How many postings the buckets hold in all.
    pub postings: u64,
}

impl IndexCommitment {
    /// The note body.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!(
            "{}{COMMITMENT_SUFFIX}\n{}\n{}\n{}\n{}\n{}\n",
            self.origin,
            self.log_size,
            STANDARD.encode(self.log_root.0),
            self.bucket_bits,
            STANDARD.encode(self.index_root.0),
            self.postings,
        )
    }

    /// Parses a note body, strictly: exactly the six lines [`IndexCommitment::to_text`] writes.
    ///
    /// # Errors
    ///
    /// [`CommitmentError::Malformed`] naming the line.
    pub fn parse(text: &str) -> Result<IndexCommitment, CommitmentError> {
        let body = text.strip_suffix('\n').ok_or(CommitmentError::Malformed(
            "the body must end with a newline",
        ))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [first, size, log_root, bits, index_root, postings] = lines[..] else {
            return Err(CommitmentError::Malformed("the body must have six lines"));
        };
        let origin = first
            .strip_suffix(COMMITMENT_SUFFIX)
            .filter(|o| !o.is_empty())
            .ok_or(CommitmentError::Malformed(
                "the first line must be <origin>/search-index/v1",
            ))?;
        let bucket_bits = parse_decimal(bits, "bucket bits")
            .ok()
            .and_then(|b| u8::try_from(b).ok())
            .filter(|b| *b <= MAX_BUCKET_BITS)
            .ok_or(CommitmentError::Malformed("bucket bits must be 0 to 24"))?;
        Ok(IndexCommitment {
            origin: origin.to_string(),
            log_size: parse_decimal(size, "the log size")?,
            log_root: parse_hash(log_root, "the log root")?,
            bucket_bits,
            index_root: parse_hash(index_root, "the index root")?,
            postings: parse_decimal(postings, "the posting count")?,
        })
    }

    /// The number of buckets.
    #[must_use]
    pub fn buckets(&self) -> u64 {
        1 << self.bucket_bits
    }
}

fn parse_decimal(text: &str, what: &'static str) -> Result<u64, CommitmentError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    text.parse::<u64>()
        .ok()
        .filter(|_| canonical)
        .ok_or(CommitmentError::Malformed(what))
}

fn parse_hash(text: &str, what: &'static str) -> Result<Hash, CommitmentError> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| Hash::from_slice(&bytes))
        .filter(|hash| STANDARD.encode(hash.0) == text)
        .ok_or(CommitmentError::Malformed(what))
}

/// The 8 bytes of a term's index key the index keeps, as a number.
#[must_use]
pub fn term_prefix(term: &SearchTerm) -> u64 {
    prefix_of_key(&term.index_key())
}

/// The first 8 bytes of an index key, big-endian.
#[must_use]
pub fn prefix_of_key(key: &[u8; 32]) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&key[..8]);
    u64::from_be_bytes(prefix)
}

/// The bucket bits for a log of `log_size` entries: about [`ENTRIES_PER_BUCKET`] entries a
/// bucket, at most [`MAX_CHOSEN_BUCKET_BITS`].
#[must_use]
pub fn bucket_bits_for(log_size: u64) -> u8 {
    let buckets = log_size.div_ceil(ENTRIES_PER_BUCKET).max(1);
    let bits = 64 - (buckets - 1).leading_zeros();
    u8::try_from(bits)
        .unwrap_or(MAX_CHOSEN_BUCKET_BITS)
        .min(MAX_CHOSEN_BUCKET_BITS)
}

/// The bucket a prefix falls in.
#[must_use]
pub fn bucket_of(prefix: u64, bits: u8) -> u64 {
    if bits == 0 {
        0
    } else {
        prefix >> (64 - u32::from(bits))
    }
}

/// The first and last prefix (inclusive) of a bucket.
#[must_use]
pub fn bucket_prefixes(bucket: u64, bits: u8) -> (u64, u64) {
    if bits == 0 {
        return (0, u64::MAX);
    }
    let shift = 64 - u32::from(bits);
    let first = bucket << shift;
    (first, first | (u64::MAX >> u32::from(bits)))
}

/// One posting as a bucket holds it.
#[must_use]
pub fn encode_posting(prefix: u64, index: u64) -> [u8; POSTING_LEN] {
    let mut out = [0u8; POSTING_LEN];
    out[..8].copy_from_slice(&prefix.to_be_bytes());
    out[8..].copy_from_slice(&index.to_be_bytes());
    out
}

/// Hashes a bucket's content as it streams by: the RFC 6962 leaf hash of its postings.
pub struct BucketHasher {
    context: Context,
}

impl BucketHasher {
    /// An empty bucket.
    #[must_use]
    pub fn new() -> Self {
        let mut context = Context::new(&SHA256);
        context.update(&[0x00]);
        BucketHasher { context }
    }

    /// Adds the next posting (callers keep them ascending).
    pub fn push(&mut self, prefix: u64, index: u64) {
        self.context.update(&encode_posting(prefix, index));
    }

    /// The bucket's leaf hash.
    #[must_use]
    pub fn finish(self) -> Hash {
        let digest = self.context.finish();
        Hash::from_slice(digest.as_ref()).unwrap_or(Hash([0; 32]))
    }
}

impl Default for BucketHasher {
    fn default() -> Self {
        Self::new()
    }
}

fn count(leaves: &[Hash]) -> u64 {
    u64::try_from(leaves.len()).unwrap_or(u64::MAX)
}

/// The leaf hash of a bucket whose content is `content` (postings, encoded).
#[must_use]
pub fn bucket_leaf_hash(content: &[u8]) -> Hash {
    rekor_tlog::leaf_hash(content)
}

/// The Merkle tree over the buckets' leaf hashes, kept whole so any bucket's proof is a walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketTree {
    /// `levels[0]` holds the leaf hashes; each level above halves; the last is the root.
    levels: Vec<Vec<Hash>>,
}

impl BucketTree {
    /// The tree over `2^bits` leaf hashes, bucket order.
    ///
    /// # Errors
    ///
    /// [`CommitmentError::Malformed`] unless there are exactly `2^bits` leaves, `bits` ≤ 24.
    pub fn new(bits: u8, leaves: Vec<Hash>) -> Result<BucketTree, CommitmentError> {
        if bits > MAX_BUCKET_BITS || count(&leaves) != 1u64 << bits {
            return Err(CommitmentError::Malformed(
                "a bucket tree needs 2^bits leaves",
            ));
        }
        Ok(BucketTree::fold(leaves))
    }

    /// Folds a power-of-two number of leaves up to the root.
    fn fold(leaves: Vec<Hash>) -> BucketTree {
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let up = level
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(up);
        }
        BucketTree { levels }
    }

    /// The tree of a set of postings, from scratch: for rebuilding and checking an index root.
    ///
    /// # Errors
    ///
    /// As [`BucketTreeBuilder::push`] and [`BucketTreeBuilder::new`].
    pub fn from_postings(
        bits: u8,
        postings: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<BucketTree, CommitmentError> {
        let mut builder = BucketTreeBuilder::new(bits)?;
        for (prefix, index) in postings {
            builder.push(prefix, index)?;
        }
        Ok(builder.finish())
    }

    /// The index root.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|level| level.first())
            .copied()
            .unwrap_or(Hash([0; 32]))
    }

    /// The bucket bits.
    #[must_use]
    pub fn bits(&self) -> u8 {
        u8::try_from(self.levels.len() - 1).unwrap_or(u8::MAX)
    }

    /// A bucket's leaf hash.
    #[must_use]
    pub fn leaf(&self, bucket: u64) -> Option<Hash> {
        let i = usize::try_from(bucket).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// A bucket's inclusion proof, leaf to root (RFC 9162 order).
    #[must_use]
    pub fn proof(&self, bucket: u64) -> Vec<Hash> {
        let mut proof = Vec::with_capacity(self.levels.len());
        let mut position = bucket;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = usize::try_from(position ^ 1).ok();
            if let Some(hash) = sibling.and_then(|i| level.get(i)) {
                proof.push(*hash);
            }
            position >>= 1;
        }
        proof
    }
}

/// Builds a [`BucketTree`] from postings streamed in ascending order, one bucket in memory.
pub struct BucketTreeBuilder {
    bits: u8,
    leaves: Vec<Hash>,
    current: BucketHasher,
    last: Option<(u64, u64)>,
    count: u64,
}

impl BucketTreeBuilder {
    /// A builder for `2^bits` buckets.
    ///
    /// # Errors
    ///
    /// [`CommitmentError::Malformed`] for more than [`MAX_BUCKET_BITS`] bits.
    pub fn new(bits: u8) -> Result<BucketTreeBuilder, CommitmentError> {
        if bits > MAX_BUCKET_BITS {
            return Err(CommitmentError::Malformed("bucket bits must be 0 to 24"));
        }
        Ok(BucketTreeBuilder {
            bits,
            leaves: Vec::with_capacity(1 << bits),
            current: BucketHasher::new(),
            last: None,
            count: 0,
        })
    }

    /// Adds the next posting.
    ///
    /// # Errors
    ///
    /// [`CommitmentError::BadBucket`] unless it comes after the one before.
    pub fn push(&mut self, prefix: u64, index: u64) -> Result<(), CommitmentError> {
        let bucket = bucket_of(prefix, self.bits);
        if self.last.is_some_and(|last| last >= (prefix, index)) {
            return Err(CommitmentError::BadBucket {
                bucket,
                reason: "postings out of order or repeated".to_string(),
            });
        }
        self.last = Some((prefix, index));
        while count(&self.leaves) < bucket {
            self.leaves.push(std::mem::take(&mut self.current).finish());
        }
        self.current.push(prefix, index);
        self.count += 1;
        Ok(())
    }

    /// The postings pushed so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The tree.
    #[must_use]
    pub fn finish(mut self) -> BucketTree {
        while self.leaves.len() < 1 << self.bits {
            self.leaves.push(std::mem::take(&mut self.current).finish());
        }
        BucketTree::fold(self.leaves)
    }
}

/// Checks a bucket proof for `term` under `commitment` and returns the indices, ascending,
/// of every posting in it with the term's prefix: by the commitment, exactly the entries
/// below `commitment.log_size` that may carry the term.
///
/// `content` must be the bucket's postings: ascending, without repeats, each in the term's
/// bucket and with an index below the log size.
///
/// # Errors
///
/// [`CommitmentError::BadBucket`] for malformed content, [`CommitmentError::NotCommitted`]
/// if the proof does not lead to the index root.
pub fn verify_bucket(
    commitment: &IndexCommitment,
    term: &SearchTerm,
    bucket: u64,
    content: &[u8],
    proof: &[Hash],
) -> Result<Vec<u64>, CommitmentError> {
    let prefix = term_prefix(term);
    let bits = commitment.bucket_bits;
    let bad = |reason: String| CommitmentError::BadBucket { bucket, reason };
    if bucket != bucket_of(prefix, bits) {
        return Err(bad(format!(
            "the term {term} falls in bucket {}",
            bucket_of(prefix, bits)
        )));
    }
    if !content.len().is_multiple_of(POSTING_LEN) {
        return Err(bad(format!(
            "{} bytes is not a whole number of postings",
            content.len()
        )));
    }
    let mut matching = Vec::new();
    let mut last: Option<(u64, u64)> = None;
    for record in content.chunks_exact(POSTING_LEN) {
        let (head, tail) = record.split_at(8);
        let posting = (
            u64::from_be_bytes(head.try_into().unwrap_or_default()),
            u64::from_be_bytes(tail.try_into().unwrap_or_default()),
        );
        if bucket_of(posting.0, bits) != bucket {
            return Err(bad(format!(
                "a posting of bucket {}",
                bucket_of(posting.0, bits)
            )));
        }
        if posting.1 >= commitment.log_size {
            return Err(bad(format!(
                "a posting of entry {}, beyond the log size {}",
                posting.1, commitment.log_size
            )));
        }
        if last.is_some_and(|last| last >= posting) {
            return Err(bad("postings out of order or repeated".to_string()));
        }
        last = Some(posting);
        if posting.0 == prefix {
            matching.push(posting.1);
        }
    }
    verify_inclusion(
        &bucket_leaf_hash(content),
        LeafIndex::new(bucket),
        TreeSize::new(commitment.buckets()),
        proof,
        &commitment.index_root,
    )
    .map_err(|e| CommitmentError::NotCommitted {
        bucket,
        reason: e.to_string(),
    })?;
    Ok(matching)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_tlog::leaf_hash;

    fn commitment(bits: u8, root: Hash, log_size: u64) -> IndexCommitment {
        IndexCommitment {
            origin: "log.example".into(),
            log_size,
            log_root: Hash([7; 32]),
            bucket_bits: bits,
            index_root: root,
            postings: 0,
        }
    }

    #[test]
    fn the_body_round_trips_and_is_parsed_strictly() {
        let c = commitment(5, Hash([9; 32]), 1234);
        let text = c.to_text();
        assert!(text.starts_with("log.example/search-index/v1\n1234\n"));
        assert_eq!(IndexCommitment::parse(&text).unwrap(), c);
        for broken in [
            text.trim_end().to_string(),
            text.replace("/v1", "/v2"),
            text.replace("\n1234\n", "\n01234\n"),
            text.replace("\n5\n", "\n25\n"),
            format!("{text}extra\n"),
            text.replacen("log.example", "", 1),
        ] {
            assert!(IndexCommitment::parse(&broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn bucket_bits_grow_with_the_log() {
        assert_eq!(bucket_bits_for(0), 0);
        assert_eq!(bucket_bits_for(128), 0);
        assert_eq!(bucket_bits_for(129), 1);
        assert_eq!(bucket_bits_for(10_000_000), 17);
        assert_eq!(bucket_bits_for(u64::MAX), MAX_CHOSEN_BUCKET_BITS);
        assert_eq!(bucket_of(u64::MAX, 3), 7);
        assert_eq!(bucket_prefixes(7, 3), (0xE000_0000_0000_0000, u64::MAX));
        assert_eq!(bucket_prefixes(0, 0), (0, u64::MAX));
    }

    /// The tree checked against leaves hashed by hand and a root folded by hand.
    #[test]
    fn a_tree_from_postings_matches_one_built_by_hand() {
        let postings = [(1u64 << 62, 3u64), (1 << 62, 9), (3 << 62, 4)];
        let tree = BucketTree::from_postings(1, postings).unwrap();
        let mut first = Vec::new();
        first.extend_from_slice(&encode_posting(1 << 62, 3));
        first.extend_from_slice(&encode_posting(1 << 62, 9));
        let left = leaf_hash(&first);
        let right = leaf_hash(&encode_posting(3 << 62, 4));
        assert_eq!(tree.root(), node_hash(&left, &right));
        assert_eq!(tree.proof(0), vec![right]);
        assert_eq!(tree.bits(), 1);
        // An empty set at zero bits is the hash of one empty bucket.
        let empty = BucketTree::from_postings(0, []).unwrap();
        assert_eq!(empty.root(), leaf_hash(&[]));
        assert!(empty.proof(0).is_empty());
    }

    #[test]
    fn bucket_proofs_verify_and_refuse_tampering() {
        let term = SearchTerm::identity("alice@example.com").unwrap();
        let prefix = term_prefix(&term);
        let bits = 4;
        let bucket = bucket_of(prefix, bits);
        let (first, last) = bucket_prefixes(bucket, bits);
        let mut postings = vec![(first, 1), (prefix, 2), (prefix, 5), (last, 0)];
        postings.push((prefix ^ (1 << 63), 6)); // another bucket
        postings.sort_unstable();
        postings.dedup();
        let tree = BucketTree::from_postings(bits, postings.iter().copied()).unwrap();
        let c = commitment(bits, tree.root(), 10);
        let content: Vec<u8> = postings
            .iter()
            .filter(|(p, _)| bucket_of(*p, bits) == bucket)
            .flat_map(|(p, i)| encode_posting(*p, *i))
            .collect();
        let proof = tree.proof(bucket);
        let found = verify_bucket(&c, &term, bucket, &content, &proof).unwrap();
        assert_eq!(found, vec![2, 5]);

        // Dropping the posting of entry 5 (the omission the commitment exists to catch).
        let without: Vec<u8> = content
            .chunks_exact(POSTING_LEN)
            .filter(|r| *r != encode_posting(prefix, 5))
            .flatten()
            .copied()
            .collect();
        assert!(matches!(
            verify_bucket(&c, &term, bucket, &without, &proof),
            Err(CommitmentError::NotCommitted { .. })
        ));
        let mut flipped = proof.clone();
        flipped[0].0[0] ^= 1;
        assert!(verify_bucket(&c, &term, bucket, &content, &flipped).is_err());
        assert!(verify_bucket(&c, &term, bucket ^ 1, &content, &proof).is_err());
        assert!(verify_bucket(&c, &term, bucket, &content[1..], &proof).is_err());
        let short = commitment(bits, tree.root(), 5);
        assert!(matches!(
            verify_bucket(&short, &term, bucket, &content, &proof),
            Err(CommitmentError::BadBucket { .. })
        ));
        let mut reordered = content.clone();
        reordered.rotate_left(POSTING_LEN);
        assert!(matches!(
            verify_bucket(&c, &term, bucket, &reordered, &proof),
            Err(CommitmentError::BadBucket { .. })
        ));
    }
}
