//! etcd's HTTP JSON gateway, driven over plain HTTP/1.1 as curl, Patroni or any HTTP client
//! sends it, against an in-process single-member store on 127.0.0.1: unary routes, the
//! streaming watch and keepalive routes, errors, version prefixes, and Patroni's own request
//! shapes (patroni.md §2.3), plus — when Python with Patroni is installed — Patroni's real
//! etcd3 DCS client against pgwarden.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod auth;
#[path = "../common/mod.rs"]
mod common;
mod errors;
mod kv;
mod patroni;
mod streams;
mod support;
