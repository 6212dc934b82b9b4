# Occlum.json edits for occlum_server (the KMS's enclave). product_id 1 is what the client's
# init_ra_conf.json requires of the KMS (verify_isv_prod_id "on").
.resource_limits.user_space_size = "1MB" |
.resource_limits.user_space_max_size = "500MB" |
.resource_limits.max_num_of_threads = 32 |
.metadata.product_id = 1 |
.metadata.debuggable = $debuggable
