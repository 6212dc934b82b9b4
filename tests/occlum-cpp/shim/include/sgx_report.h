/* Minimal SGX report types for building Occlum's grpc_ratls without the Intel SGX SDK.
 * Written for this project's interop test from the SGX architecture's documented layout
 * (SDM vol. 3D, REPORTBODY: 384 bytes); only what occlum_dcap.h and sgx_ra_tls_occlum.cc use. */
#ifndef SGX_REPORT_H_SIM
#define SGX_REPORT_H_SIM
#include <stdint.h>

#define SGX_FLAGS_INITTED 0x0000000000000001ULL
#define SGX_FLAGS_DEBUG   0x0000000000000002ULL

#pragma pack(push, 1)
typedef struct { uint8_t d[64]; } sgx_report_data_t;
typedef struct { uint8_t m[32]; } sgx_measurement_t;
typedef struct { uint64_t flags; uint64_t xfrm; } sgx_attributes_t;
typedef struct { uint8_t svn[16]; } sgx_cpu_svn_t;

typedef struct {
    sgx_cpu_svn_t     cpu_svn;          /*   0 */
    uint32_t          misc_select;      /*  16 */
    uint8_t           reserved1[12];    /*  20 */
    uint8_t           isv_ext_prod_id[16]; /* 32 */
    sgx_attributes_t  attributes;       /*  48 */
    sgx_measurement_t mr_enclave;       /*  64 */
    uint8_t           reserved2[32];    /*  96 */
    sgx_measurement_t mr_signer;        /* 128 */
    uint8_t           reserved3[32];    /* 160 */
    uint8_t           config_id[64];    /* 192 */
    uint16_t          isv_prod_id;      /* 256 */
    uint16_t          isv_svn;          /* 258 */
    uint16_t          config_svn;       /* 260 */
    uint8_t           reserved4[42];    /* 262 */
    uint8_t           isv_family_id[16]; /* 304 */
    sgx_report_data_t report_data;      /* 320 */
} sgx_report_body_t;                    /* 384 */
#pragma pack(pop)

#ifdef __cplusplus
static_assert(sizeof(sgx_report_body_t) == 384, "REPORTBODY is 384 bytes");
#endif
#endif
