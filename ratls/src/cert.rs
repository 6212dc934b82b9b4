//! RA-TLS certificates: minting (Occlum form) and evidence extraction and binding.
