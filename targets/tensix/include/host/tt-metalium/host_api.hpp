// Shim at tt-metal's installed include path <tt-metalium/host_api.hpp>: the declarations sovc's generated host uses
// (tt-metal v0.74.0, tt_metal/api/tt-metalium/host_api.hpp), from sovc_tt_host_api.h. For syntax checks only.
#pragma once
#include "../sovc_tt_host_api.h"
