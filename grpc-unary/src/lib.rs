//! Minimal blocking gRPC unary client.
