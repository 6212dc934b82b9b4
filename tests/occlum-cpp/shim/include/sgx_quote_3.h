/* Minimal ECDSA quote v3 header types (Intel SGX ECDSA Quote Library Reference, "Quote
 * Format"): 48-byte header, 384-byte report body, then the signature data. */
#ifndef SGX_QUOTE_3_H_SIM
#define SGX_QUOTE_3_H_SIM
#include <stdint.h>
#include "sgx_report.h"

#pragma pack(push, 1)
typedef struct {
    uint16_t version;
    uint16_t att_key_type;
    uint32_t att_key_data_0;
    uint16_t qe_svn;
    uint16_t pce_svn;
    uint8_t  vendor_id[16];
    uint8_t  user_data[20];
} sgx_quote_header_t;

typedef struct {
    sgx_quote_header_t header;
    sgx_report_body_t  report_body;
    uint32_t           signature_data_len;
    uint8_t            signature_data[];
} sgx_quote3_t;
#pragma pack(pop)

#ifdef __cplusplus
static_assert(sizeof(sgx_quote_header_t) == 48, "quote header is 48 bytes");
static_assert(sizeof(sgx_quote3_t) == 436, "quote v3 fixed part is 436 bytes");
#endif
#endif
