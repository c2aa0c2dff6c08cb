//! End-to-end tests: the real `shuyu` binary serving a domain over mTLS on a loopback port,
//! driven through the typed client as each role would. The harness (domain, server
//! processes, clients, polling) and the fixture builders (people, datasets, scenarios,
//! exports) live in `harness/`; each other module is one topic's tests.

mod harness;

mod audit;
mod chaos;
mod corpus;
mod data_dir;
mod dp;
mod flow;
mod governance_access;
mod isolation;
mod jobs;
mod leaks;
mod lifecycle;
mod memory;
mod oversight;
mod products;
mod python_client;
mod recovery;
mod review;
mod sandbox;
mod scenarios;
mod servers;
mod stewardship;
mod uploads;
