//! The one error type of the verifiers: each variant says what did not verify.

/// Why something did not verify. Messages name files, sizes and record numbers, never the
/// contents of a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    // ------------------------------------------------------------------ packages
    /// The bytes are not a tar archive (or it ends early).
    #[error("not a Shuyu export package: {0}")]
    NotAPackage(String),
    /// An entry's name cannot be read.
    #[error("bad entry name: {0}")]
    BadEntryName(String),
    /// An entry's bytes cannot be read (a truncated package).
    #[error("reading {name}: {reason}")]
    UnreadableEntry {
        /// The entry.
        name: String,
        /// The reader's error.
        reason: String,
    },
    /// An entry ends before the size its header declares (a truncated package).
    #[error("the package ends inside {0}: it was truncated")]
    Truncated(String),
    /// Two entries of the same name.
    #[error("the package holds {0} twice")]
    DuplicateEntry(String),
    /// A file the package must hold is missing.
    #[error("the package has no {0}")]
    MissingEntry(String),
    /// A file the manifest does not name.
    #[error("the package holds an unexpected file {0}")]
    UnexpectedEntry(String),
    /// `manifest.json` is not a manifest.
    #[error("the manifest does not parse: {0}")]
    ManifestUnparsable(String),
    /// A manifest format this version does not know.
    #[error("unknown manifest format '{0}'")]
    UnknownFormat(String),
    /// A `shuyu-export/v3` manifest without its product.
    #[error("a shuyu-export/v3 manifest names no product")]
    NoProduct,
    /// The manifest names another signing key than the one the caller trusts.
    #[error("the manifest names a different signing key than the trusted one")]
    UntrustedKey,
    /// The signing key is not hex.
    #[error("the signing key is not hex")]
    KeyNotHex,
    /// `manifest.sig` is not hex.
    #[error("the signature is not hex")]
    SignatureNotHex,
    /// The manifest's signature does not verify under the key.
    #[error("the manifest signature does not verify")]
    BadManifestSignature,
    /// The result file's length or SHA-256 is not the manifest's.
    #[error("{0} does not match the hash in the manifest")]
    ResultMismatch(String),

    // ------------------------------------------------------------------ checkpoints
    /// A signed note without the blank line that ends its body.
    #[error("not a signed note: no blank line before the signatures")]
    NotASignedNote,
    /// A checkpoint or signature line that is not what it must be.
    #[error("{0}")]
    MalformedCheckpoint(&'static str),
    /// The origin line names no Shuyu audit log.
    #[error("the checkpoint's origin is not a Shuyu audit log")]
    ForeignOrigin,
    /// A signature by the domain's key that does not verify.
    #[error("the checkpoint's signature does not verify")]
    BadCheckpointSignature,
    /// No signature line by the domain's key.
    #[error("the checkpoint carries no signature by this domain's key")]
    NoDomainSignature,
    /// A consistency proof file that does not parse.
    #[error("{0}")]
    MalformedProof(&'static str),
    /// A proof between other sizes (or logs) than the two checkpoints'.
    #[error(
        "the proof is for {from} -> {to}, the checkpoints are of {old_size} and {new_size} records (or of different logs)"
    )]
    ProofMismatch {
        /// The proof's older size.
        from: u64,
        /// The proof's newer size.
        to: u64,
        /// The older checkpoint's size.
        old_size: u64,
        /// The newer checkpoint's size.
        new_size: u64,
    },
    /// The consistency proof fails: the newer tree does not extend the older.
    #[error(
        "the trail of {new_size} records is not an extension of the one of {old_size} records: it was rewritten"
    )]
    TrailRewritten {
        /// The older checkpoint's size.
        old_size: u64,
        /// The newer checkpoint's size.
        new_size: u64,
    },

    // ------------------------------------------------------------------ audit chain
    /// The trail holds no record at all.
    #[error(
        "the trail holds no record: a domain's trail starts with its genesis record, written by `shuyu init` (records removed)"
    )]
    EmptyTrail,
    /// A record's sequence number is not the next one.
    #[error(
        "record {found} found where record {expected} was expected (removed, inserted or reordered records)"
    )]
    RecordOutOfPlace {
        /// The record's number.
        found: u64,
        /// The number expected.
        expected: u64,
    },
    /// The first record is not the domain's genesis record.
    #[error("record 1 is `{action}`, not the domain's genesis record (`init_domain`)")]
    NoGenesis {
        /// The first record's action.
        action: String,
    },
    /// A record's previous hash is not the previous record's hash.
    #[error("record {seq} does not link to the previous record")]
    BrokenLink {
        /// The record's number.
        seq: u64,
    },
    /// A record's fields do not hash to its stored hash.
    #[error("record {seq} was changed")]
    RecordChanged {
        /// The record's number.
        seq: u64,
    },
}
