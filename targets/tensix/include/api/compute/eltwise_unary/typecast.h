// Shim at tt-metal's include path api/compute/eltwise_unary/typecast.h: asks sovc_tt_kernel_api.h for the declarations the real header
// of this name provides (tt-metal v0.74.0, tt_metal/hw/inc/api/compute/eltwise_unary/typecast.h). For syntax checks only.
#pragma once
#define SOVC_TT_WANT_COMPUTE
#define SOVC_TT_WANT_COMPUTE_TYPECAST
#include "sovc_tt_kernel_api.h"
