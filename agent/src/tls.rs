//! Mutual TLS for the peer API: server and client configs, and peer authorization.
