//! Simulated SGX platform.
