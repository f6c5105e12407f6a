//! Cluster CA and node certificates (rcgen), so operators need no openssl.
