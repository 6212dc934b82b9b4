# Occlum.json edits for a KMS enclave in CLUSTER mode (issue 26), applied after server.Occlum.jq:
#   jq --argjson debuggable false -f server.Occlum.jq Occlum.json |
#     jq -f cluster.Occlum.jq > Occlum.json.new
# and copy cluster.json into the image at /cluster.json (a copy_bom entry next to
# dynamic_config.json in server.yaml). Its presence in the MEASURED image is what turns cluster
# mode on: the host cannot turn it off by dropping an argument, and `--cluster FILE` is refused
# inside Occlum. Start from cluster.example.json: put each operator's SPKI SHA-256 (`kms admin
# fingerprint --cert alice.crt`) in "operators" (they sign Genesis and Recover), choose the
# replica policy ("same-enclave": only this exact build may obtain the cluster key;
# "same-signer": any build with the same mr_signer and isv_prod_id, isv_svn >= own and the same
# debug flag, which rolling upgrades need) and the staleness bound (seconds a replica keeps
# releasing without a successful linearizable read from etcd; 0 = unlimited).
#
# Host-chosen arguments (availability only, no env.untrusted entry needed: they are argv):
#   --etcd http://m1:2379,http://m2:2379,...   etcd's client URLs (the JSON gateway)
#   --peers host:4433,...                       the other replicas' main ports (or one DNS name
#                                               that resolves to all of them)
#   --health-listen 0.0.0.0:9090                plaintext /livez and /readyz for probes
# The cluster slot (cluster key + highest generation seen, sealed with the enclave's seal key)
# is the fixed /var/lib/kms/cluster.slot in the encrypted rootfs, so the rootfs must be
# writable there (the default Occlum unionfs is).
#
# Threads (max_num_of_threads counts every thread the LibOS runs for the process): single mode
# fits in server.Occlum.jq's 32. Cluster mode adds the health endpoint (1 accept thread + up to
# 8 short-lived connection threads), the etcd sync thread and its watch stream, a peer-join
# thread while the replica has no key, and the replica service's calls on the existing gRPC
# threads; with --metrics-listen (1 + 4) and headroom for grpcio's internal threads: 64.
# Memory: the state record is at most 1,000,000 bytes of plaintext (etcd's 1.5 MiB request
# limit), held a few times over while a new one is verified: well inside the 500MB maximum.
.resource_limits.max_num_of_threads = 64
