//! Control groups (v1, hybrid and v2): limits, membership, freezer and stats.
