//! Client of CRIU's RPC (`criu swrk`): version, feature checks, dump and restore.
