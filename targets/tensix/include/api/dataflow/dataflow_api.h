// Shim at tt-metal's include path api/dataflow/dataflow_api.h: asks sovc_tt_kernel_api.h for the declarations the real header
// of this name provides (tt-metal v0.74.0, tt_metal/hw/inc/api/dataflow/dataflow_api.h). For syntax checks only.
#pragma once
#define SOVC_TT_WANT_DATAFLOW
#include "sovc_tt_kernel_api.h"
