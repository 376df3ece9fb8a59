//! Multi-process fault suites (filled in next).
