#!/usr/bin/env python3
"""Intel's reference Quote Verification Library (QVL) as an independent judge of evidence.

Reads one JSON document on stdin: {"cases": [CASE, ...]} where each CASE has
  name, root_pem, pck_pem, pck_signing_chain_pem (PCK CA then root), root_crl_pem,
  pck_crl_pem, tcb_info (the PCS body {"tcbInfo":..,"signature":..}), tcb_signing_chain_pem,
  qe_identity (the PCS body {"enclaveIdentity":..,"signature":..}), quote_hex, when (Unix s).
Writes one JSON document on stdout: {"qvl": {...versions...}, "results": [RESULT, ...]}
where each RESULT names the four statuses Intel's QVL returned (Intel's own enum names).

Exit codes: 0 verified every case (whatever the verdicts), 3 the QVL module is not
installed (pip install sgx-dcap-quote-verify-python cbor2), 1 anything else.
"""

import ctypes
import datetime
import json
import sys

MISSING = 3


def main():
    # Read the whole request first, so the caller's write never meets a closed pipe.
    request = json.load(sys.stdin)
    try:
        import sgx_dcap_quote_verify as qvl
        from importlib import metadata
    except ImportError as e:
        print(f"qvl_oracle: Intel's QVL is not importable ({e}); "
              "install it with: python3 -m pip install sgx-dcap-quote-verify-python cbor2",
              file=sys.stderr)
        return MISSING

    results = []
    for case in request["cases"]:
        # pybind11 converts a naive datetime with mktime (local time): give it local time.
        when = datetime.datetime.fromtimestamp(case["when"])
        r = qvl.verify(
            case["root_pem"],
            case["pck_pem"],
            case["pck_signing_chain_pem"],
            case["root_crl_pem"],
            case["pck_crl_pem"],
            case["tcb_info"],
            case["tcb_signing_chain_pem"],
            bytes.fromhex(case["quote_hex"]),
            case["qe_identity"],
            when,
        )
        report = r.enclave_report
        results.append({
            "name": case["name"],
            "ok": bool(r.ok),
            "pck_certificate_status": r.pck_certificate_status.name,
            "tcb_info_status": r.tcb_info_status.name,
            "qe_identity_status": r.qe_identity_status.name,
            "quote_status": r.quote_status.name,
            "mr_enclave": report.mr_enclave.hex() if report else None,
            "report_data": report.report_data.hex() if report else None,
        })

    versions = {"package": metadata.version("sgx-dcap-quote-verify-python")}
    try:
        lib = ctypes.CDLL(qvl._core.__file__)
        lib.sgxAttestationGetVersion.restype = ctypes.c_char_p
        versions["attestation_library"] = lib.sgxAttestationGetVersion().decode()
    except (OSError, AttributeError):
        versions["attestation_library"] = "unknown"
    json.dump({"qvl": versions, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
