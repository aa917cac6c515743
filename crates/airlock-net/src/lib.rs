//! airlock egress: HTTP proxy, DNS filter, credential injector
#![forbid(unsafe_code)]
