//! The demo: a seeded generator of synthetic public data (`data`) and `shuyu quickstart`,
//! which runs a whole domain on it in one process — server and client side.

pub mod data;
pub mod quickstart;
