//! The catalog area: datasets, ingest and grants, served by the `CatalogService`.

pub(crate) mod records;
pub(crate) mod rpc;

/// What the `CatalogService` work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// The engine with the domain-wide envelope.
    pub(crate) engine: shuyu_engine::Engine,
    /// Datasets and grants.
    pub(crate) store: crate::store::Store,
    /// Dataset and pseudonym keys.
    pub(crate) keys: std::sync::Arc<crate::keys::KeyStore>,
    /// Where datasets are written.
    pub(crate) storage: shuyu_engine::Storage,
    /// Sampling and masking rules.
    pub(crate) policy: std::sync::Arc<shuyu_policy::Policy>,
    /// `max_ingest_bytes`: the largest accepted ingest.
    pub(crate) max_ingest_bytes: usize,
}
