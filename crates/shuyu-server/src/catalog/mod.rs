//! The catalog area: datasets, ingest and grants, served by the `CatalogService`.

pub(crate) mod records;
pub(crate) mod rpc;
