# Occlum.json edits for occlum_client (the app's enclave), as the seed's build_content.sh makes
# them, plus product_id 0 so the KMS can tell the client from the KMS (same signing key).
# OCCLUM_INIT_RA_KMS_SERVER and OCCLUM_INIT_RA_PCCS_URL reach init only if listed in
# env.untrusted (Occlum passes no other host variable in); the host may set them because the
# connection they choose is attested and the collateral is verified (Intel-signed).
.resource_limits.user_space_size = "1MB" |
.resource_limits.user_space_max_size = "600MB" |
.resource_limits.kernel_space_heap_size = "1MB" |
.resource_limits.kernel_space_heap_max_size = "128MB" |
.resource_limits.max_num_of_threads = 32 |
.metadata.product_id = 0 |
.metadata.debuggable = $debuggable |
.metadata.enable_kss = true |
.metadata.version_number = 88 |
.env.untrusted = (((.env.untrusted // []) + ["OCCLUM_INIT_RA_KMS_SERVER", "OCCLUM_INIT_RA_PCCS_URL"]) | unique)
