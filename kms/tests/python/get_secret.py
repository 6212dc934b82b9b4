#!/usr/bin/env python3
"""Fetch secrets from the KMS the way Occlum's C++ client does, with Python grpcio.

usage: get_secret.py ADDR KMS_CERT CLIENT_CERT CLIENT_KEY TARGET_NAME NAME...

Speaks the raw GrSecret protocol (hand-encoded protobuf, no generated code) over one
mutually authenticated TLS channel. For each NAME prints one line: NAME, then the reply's
`secret` field exactly as received (hex), then the base64-decoded secret (hex). Exits 3 if
a reply is not Occlum's quoted form ("<base64>"), 4 on a gRPC error (code on stderr).
"""
import base64
import binascii
import sys

import grpc


def encode_name(name: bytes) -> bytes:
    out = bytearray([0x0A])
    n = len(name)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + name


def decode_field1(msg: bytes) -> bytes:
    if not msg:
        return b""
    if msg[0] != 0x0A:
        raise ValueError("reply field 1 must be length-delimited")
    n, shift, i = 0, 0, 1
    while True:
        b = msg[i]
        n |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            break
    if len(msg) != i + n:
        raise ValueError("trailing bytes in reply")
    return msg[i:]


def main(argv):
    if len(argv) < 7:
        print(__doc__, file=sys.stderr)
        return 2
    addr, kms_cert, client_cert, client_key, target = argv[1:6]
    names = argv[6:]
    read = lambda p: open(p, "rb").read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(kms_cert),
        private_key=read(client_key),
        certificate_chain=read(client_cert),
    )
    options = (("grpc.ssl_target_name_override", target),)
    with grpc.secure_channel(addr, creds, options=options) as channel:
        get_secret = channel.unary_unary("/ratls.GrSecret/GetSecret")
        for name in names:
            try:
                reply = get_secret(encode_name(name.encode()), timeout=20)
            except grpc.RpcError as e:
                print(f"{name}: {e.code().name}: {e.details()}", file=sys.stderr)
                return 4
            text = decode_field1(reply)
            if len(text) < 2 or text[:1] != b'"' or text[-1:] != b'"':
                print(f"{name}: reply is not Occlum's quoted form", file=sys.stderr)
                return 3
            value = base64.b64decode(text[1:-1], validate=True)
            print(name, binascii.hexlify(text).decode(), binascii.hexlify(value).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
