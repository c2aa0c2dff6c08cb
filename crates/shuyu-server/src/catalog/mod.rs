//! The catalog area: datasets, ingest and grants, served by the `CatalogService`.

pub(crate) mod rpc;
