// sovc_tt_kernel_api.h: declarations of the TT-Metalium kernel API that sovc's emitted kernels call, so that
// `g++ -std=c++17 -fsyntax-only -I targets/tensix/include kernel.cpp` checks an emitted kernel against the API
// of the pinned tt-metal release (v0.74.0, `TT_METAL_VERSION` in targets/tensix/src/emit.rs) without a
// tt-metal checkout or its RISC-V toolchain.
//
// Written for sovc from reading tt-metal's headers; nothing here is copied from them. Only the functions and
// types sovc emits are declared, with the argument lists (and defaulted trailing parameters) the v0.74.0
// headers give them, so a misspelled name, a wrong argument count or a header the kernel forgot to include is
// an error here as it would be on the device. Bodies are left out except where a constant expression needs one
// (TensorAccessorArgs). Template parameters that tt-metal defaults to build-time macros (DST_ACCUM_MODE,
// REDUCE_OP, ...) are defaulted to plain constants or left without a default; sovc always spells them out
// where it relies on them.
//
// The shims under api/ (api/dataflow/dataflow_api.h, api/compute/matmul.h, ...) sit at tt-metal's include
// paths; each one asks for the sections of this file that mirror the real header of the same name, so a
// kernel sees exactly what it included. Each section names the tt-metal header it mirrors.

#include <stddef.h>
#include <stdint.h>

// ---------------------------------------------------------------------------------------------------------
// Shared by every kernel (tt_metal/hw/inc/internal/risc_attribs.h, api/compile_time_args.h, the runtime-arg
// accessors and the device-side DataFormat of tt_metal/hw/inc/internal/tt_backend_api_types / hostdevcommon).
#ifndef SOVC_TT_COMMON_DECLARED
#define SOVC_TT_COMMON_DECLARED

#ifndef tt_l1_ptr
#define tt_l1_ptr  // an address-space attribute on the RISC-V toolchain; nothing on the host
#endif
#ifndef FORCE_INLINE
#define FORCE_INLINE inline __attribute__((always_inline))
#endif

// Values follow tt::DataFormat; only the names matter to a syntax check.
enum class DataFormat : uint8_t {
    Float32 = 0,
    Float16 = 1,
    Bfp8 = 2,
    Bfp4 = 3,
    Float16_b = 5,
    Bfp8_b = 6,
    Bfp4_b = 7,
    Int32 = 8,
    UInt16 = 9,
    UInt32 = 24,
};

namespace tt {
enum CBIndex : uint8_t { c_0 = 0, c_1, c_2, c_3, c_4, c_5, c_6, c_7, c_8, c_16 = 16, c_24 = 24, c_31 = 31 };
}  // namespace tt

// Runtime arguments of the core (the same accessor in data-movement and compute kernels).
template <typename T>
T get_arg_val(int arg_idx);
template <typename T>
T get_common_arg_val(int arg_idx);

#endif  // SOVC_TT_COMMON_DECLARED

// ---------------------------------------------------------------------------------------------------------
// Circular buffers, both sides of the FIFO (tt_metal/hw/inc/api/dataflow/dataflow_api.h for data-movement
// kernels, tt_metal/hw/inc/api/compute/cb_api.h for compute kernels; the same four names and arguments).
#if (defined(SOVC_TT_WANT_DATAFLOW) || defined(SOVC_TT_WANT_COMPUTE_CB)) && !defined(SOVC_TT_CB_DECLARED)
#define SOVC_TT_CB_DECLARED
void cb_reserve_back(uint32_t cb_id, uint32_t num_tiles);
void cb_push_back(uint32_t cb_id, uint32_t num_tiles);
void cb_wait_front(uint32_t cb_id, uint32_t num_tiles);
void cb_pop_front(uint32_t cb_id, uint32_t num_tiles);
#endif

// ---------------------------------------------------------------------------------------------------------
// Data movement (tt_metal/hw/inc/api/dataflow/dataflow_api.h, with api/tensor/tensor_accessor.h and
// api/tensor/tensor_accessor_args.h that it brings in).
#if defined(SOVC_TT_WANT_DATAFLOW) && !defined(SOVC_TT_DATAFLOW_DECLARED)
#define SOVC_TT_DATAFLOW_DECLARED

extern uint8_t noc_index;

uint32_t get_write_ptr(uint32_t operand);
uint32_t get_read_ptr(uint32_t operand);
uint32_t get_tile_size(uint32_t operand);

// Compile-time description of a tensor's memory layout, read from the kernel's compile-time arguments starting
// at CTA_OFFSET; the host appends it with TensorAccessorArgs(buffer).append_to(args).
template <uint32_t CTA_OFFSET, uint32_t CRTA_OFFSET = 0xFFFFFFFFu>
struct TensorAccessorArgs {
    constexpr TensorAccessorArgs() {}
    // The first compile-time argument after this accessor's block (its real length depends on the layout).
    static constexpr uint32_t next_compile_time_args_offset() { return CTA_OFFSET + 1; }
};

// Page-indexed view of an interleaved or sharded tensor: bank base address plus page size.
template <typename DSpec>
struct TensorAccessor {
    TensorAccessor(const DSpec& args, uint32_t bank_base_address, uint32_t page_size);
    uint64_t get_noc_addr(uint32_t page_id, uint32_t offset = 0, uint8_t noc = noc_index) const;
};

template <typename AddrGen>
void noc_async_read_tile(
    uint32_t id, const AddrGen& addrgen, uint32_t dst_local_l1_addr, uint32_t offset = 0, uint8_t noc = noc_index);
template <typename AddrGen>
void noc_async_write_tile(uint32_t id, const AddrGen& addrgen, uint32_t src_local_l1_addr, uint8_t noc = noc_index);
void noc_async_read_barrier(uint8_t noc = noc_index);
void noc_async_write_barrier(uint8_t noc = noc_index);
void noc_async_writes_flushed(uint8_t noc = noc_index);

// Core to core: semaphores (words of L1 the host creates with CreateSemaphore) and multicast writes to a
// rectangle of cores, in NoC coordinates.
#ifndef tt_l1_ptr
#define tt_l1_ptr  // __attribute__((rvtt_l1_ptr)) for the RISC-V compiler; nothing for a host check
#endif
enum class ProgrammableCoreType { TENSIX, ACTIVE_ETH, IDLE_ETH };
template <ProgrammableCoreType type = ProgrammableCoreType::TENSIX>
uint32_t get_semaphore(uint32_t semaphore_id);
uint64_t get_noc_addr(uint32_t noc_x, uint32_t noc_y, uint32_t addr, uint8_t noc = noc_index);
uint64_t get_noc_multicast_addr(
    uint32_t noc_x_start, uint32_t noc_y_start, uint32_t noc_x_end, uint32_t noc_y_end, uint32_t addr,
    uint8_t noc = noc_index);
void noc_semaphore_set(volatile tt_l1_ptr uint32_t* sem_addr, uint32_t val);
void noc_semaphore_wait(volatile tt_l1_ptr uint32_t* sem_addr, uint32_t val);
void noc_semaphore_inc(uint64_t addr, uint32_t incr, uint8_t noc_id = noc_index);
template <uint32_t max_page_size = 8192 + 1>
void noc_async_write_multicast(
    uint32_t src_local_l1_addr, uint64_t dst_noc_addr_multicast, uint32_t size, uint32_t num_dests,
    bool linked = false, uint8_t noc = noc_index);
void noc_semaphore_set_multicast(
    uint32_t src_local_l1_addr, uint64_t dst_noc_addr_multicast, uint32_t num_dests, bool linked = false,
    uint8_t noc = noc_index);

#endif  // SOVC_TT_DATAFLOW_DECLARED

// ---------------------------------------------------------------------------------------------------------
// Compute: the namespace and enums every compute header shares (tt_metal/hw/inc/api/compute/common.h,
// common_globals.h and the LLK type headers they include: PoolType, ReduceDim, VectorMode).
#if defined(SOVC_TT_WANT_COMPUTE) && !defined(SOVC_TT_COMPUTE_COMMON_DECLARED)
#define SOVC_TT_COMPUTE_COMMON_DECLARED
namespace ckernel {
enum PoolType { SUM, AVG, MAX };
enum ReduceDim { REDUCE_ROW, REDUCE_COL, REDUCE_SCALAR };
enum class VectorMode : uint8_t { None = 0, R = 1, C = 2, RC = 4, RC_custom = 6 };
}  // namespace ckernel
using namespace ckernel;
#endif

// tt_metal/hw/inc/api/compute/cb_api.h (declared above, shared with data movement).

// tt_metal/hw/inc/api/compute/reg_api.h: the Dst handshake between the MATH and PACK threads.
#if defined(SOVC_TT_WANT_COMPUTE_REG) && !defined(SOVC_TT_REG_DECLARED)
#define SOVC_TT_REG_DECLARED
namespace ckernel {
void tile_regs_acquire();
void tile_regs_commit();
void tile_regs_wait();
void tile_regs_release();
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/compute_kernel_hw_startup.h: the one-time configuration at kernel start.
#if defined(SOVC_TT_WANT_COMPUTE_STARTUP) && !defined(SOVC_TT_STARTUP_DECLARED)
#define SOVC_TT_STARTUP_DECLARED
namespace ckernel {
// How (icb0, icb1) map onto SrcA/SrcB: Regular for every op but matmul, which feeds in0 to SrcB.
enum class SrcOrder : uint8_t { Regular = 0, Reverse = 1 };
template <SrcOrder src_order = SrcOrder::Regular>
void compute_kernel_hw_startup(uint32_t icb0, uint32_t icb1, uint32_t ocb);
void compute_kernel_hw_startup(uint32_t icb0, uint32_t ocb);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/pack.h: Dst to a circular buffer.
#if defined(SOVC_TT_WANT_COMPUTE_PACK) && !defined(SOVC_TT_PACK_DECLARED)
#define SOVC_TT_PACK_DECLARED
namespace ckernel {
template <bool out_of_order_output = false>
void pack_tile(uint32_t ifrom_dst, uint32_t icb, uint32_t output_tile_index = 0);
template <bool is_tile_dim_reconfig_en = false>
void pack_reconfig_data_format(uint32_t new_cb_id);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/reconfig_data_format.h: unpacker source formats between ops.
#if defined(SOVC_TT_WANT_COMPUTE_RECONFIG) && !defined(SOVC_TT_RECONFIG_DECLARED)
#define SOVC_TT_RECONFIG_DECLARED
namespace ckernel {
template <bool to_from_int8 = false, bool is_tile_dim_reconfig_en = false>
void reconfig_data_format_srca(uint32_t srca_new_operand);
template <bool to_from_int8 = false, bool is_tile_dim_reconfig_en = false>
void reconfig_data_format_srcb(uint32_t srcb_new_operand);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/tile_move_copy.h: a circular-buffer tile into Dst.
#if defined(SOVC_TT_WANT_COMPUTE_COPY) && !defined(SOVC_TT_COPY_DECLARED)
#define SOVC_TT_COPY_DECLARED
namespace ckernel {
void copy_tile_to_dst_init_short(
    uint32_t cbid, uint32_t transpose = 0, uint32_t transpose_within_16x16_face = false,
    uint32_t call_line = __builtin_LINE());
void copy_tile_init(uint32_t cbid, uint32_t call_line = __builtin_LINE());
void copy_tile(uint32_t in_cb_id, uint32_t in_tile_index, uint32_t dst_tile_index);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/matmul.h (the matmul_init model of v0.74.0; mm_init_short is deprecated there).
#if defined(SOVC_TT_WANT_COMPUTE_MATMUL) && !defined(SOVC_TT_MATMUL_DECLARED)
#define SOVC_TT_MATMUL_DECLARED
namespace ckernel {
void matmul_init(uint32_t in0_cb_id, uint32_t in1_cb_id, const uint32_t transpose = 0,
                 uint32_t call_line = __builtin_LINE());
void matmul_tiles(uint32_t in0_cb_id, uint32_t in1_cb_id, uint32_t in0_tile_index, uint32_t in1_tile_index,
                  uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_binary.h: FPU add/sub/mul of two circular-buffer tiles.
#if defined(SOVC_TT_WANT_COMPUTE_BINARY) && !defined(SOVC_TT_BINARY_DECLARED)
#define SOVC_TT_BINARY_DECLARED
namespace ckernel {
void add_tiles_init(uint32_t icb0, uint32_t icb1, bool acc_to_dest = false, uint32_t call_line = __builtin_LINE());
void sub_tiles_init(uint32_t icb0, uint32_t icb1, bool acc_to_dest = false, uint32_t call_line = __builtin_LINE());
void mul_tiles_init(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void mul_tiles_init(uint32_t icb0, uint32_t icb1, uint32_t acc_to_dest, uint32_t call_line);
void add_tiles(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
void sub_tiles(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
void mul_tiles(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/bcast.h: the broadcast forms and their short inits. The scalar inits of sub and
// mul carry a `_tiles` the other inits do not; that is tt-metal's spelling.
#if defined(SOVC_TT_WANT_COMPUTE_BCAST) && !defined(SOVC_TT_BCAST_DECLARED)
#define SOVC_TT_BCAST_DECLARED
namespace ckernel {
void add_tiles_bcast_rows(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst,
                          uint32_t bcast_row_idx = 0);
void sub_tiles_bcast_rows(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst,
                          uint32_t bcast_row_idx = 0);
void mul_tiles_bcast_rows(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst,
                          uint32_t bcast_row_idx = 0);
void add_tiles_bcast_cols(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
void sub_tiles_bcast_cols(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
void mul_tiles_bcast_cols(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
void add_tiles_bcast_scalar(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
void sub_tiles_bcast_scalar(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
void mul_tiles_bcast_scalar(uint32_t icb0, uint32_t icb1, uint32_t itile0, uint32_t itile1, uint32_t idst);
void add_bcast_rows_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void sub_bcast_rows_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void mul_bcast_rows_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void add_bcast_cols_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void sub_bcast_cols_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void mul_bcast_cols_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void add_bcast_scalar_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void sub_tiles_bcast_scalar_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
void mul_tiles_bcast_scalar_init_short(uint32_t icb0, uint32_t icb1, uint32_t call_line = __builtin_LINE());
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_binary_sfpu.h: SFPU ops of two Dst tiles into a third.
#if defined(SOVC_TT_WANT_COMPUTE_BINARY_SFPU) && !defined(SOVC_TT_BINARY_SFPU_DECLARED)
#define SOVC_TT_BINARY_SFPU_DECLARED
namespace ckernel {
void add_binary_tile_init();
void sub_binary_tile_init();
void mul_binary_tile_init();
void div_binary_tile_init();
void power_binary_tile_init();
template <bool is_fp32_dest_acc_en = false>
void add_binary_tile(uint32_t idst0, uint32_t idst1, uint32_t odst);
template <bool is_fp32_dest_acc_en = false>
void sub_binary_tile(uint32_t idst0, uint32_t idst1, uint32_t odst);
template <bool is_fp32_dest_acc_en = false>
void mul_binary_tile(uint32_t idst0, uint32_t idst1, uint32_t odst);
template <bool is_fp32_dest_acc_en = false>
void div_binary_tile(uint32_t idst0, uint32_t idst1, uint32_t odst);
template <bool is_fp32_dest_acc_en = false>
void power_binary_tile(uint32_t idst0, uint32_t idst1, uint32_t odst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/binary_max_min.h
#if defined(SOVC_TT_WANT_COMPUTE_BINARY_MAX_MIN) && !defined(SOVC_TT_BINARY_MAX_MIN_DECLARED)
#define SOVC_TT_BINARY_MAX_MIN_DECLARED
namespace ckernel {
void binary_max_tile_init();
void binary_min_tile_init();
void binary_max_tile(uint32_t idst0, uint32_t idst1, uint32_t odst, int vector_mode = (int)VectorMode::RC);
void binary_min_tile(uint32_t idst0, uint32_t idst1, uint32_t odst, int vector_mode = (int)VectorMode::RC);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/copy_dest_values.h: one Dst tile into another (SFPU).
#if defined(SOVC_TT_WANT_COMPUTE_COPY_DEST) && !defined(SOVC_TT_COPY_DEST_DECLARED)
#define SOVC_TT_COPY_DEST_DECLARED
namespace ckernel {
void copy_dest_values_init();
template <DataFormat DATA_FORMAT>
void copy_dest_values(uint32_t idst_in, uint32_t idst_out);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/reduce.h
#if defined(SOVC_TT_WANT_COMPUTE_REDUCE) && !defined(SOVC_TT_REDUCE_DECLARED)
#define SOVC_TT_REDUCE_DECLARED
namespace ckernel {
template <PoolType reduce_type, ReduceDim reduce_dim, bool enforce_fp32_accumulation = false>
void reduce_init(uint32_t icb, uint32_t icb_scaler, uint32_t ocb, uint32_t call_line = __builtin_LINE());
template <bool enforce_fp32_accumulation = false>
void reduce_uninit(uint32_t icb = 0);
template <PoolType reduce_type, ReduceDim reduce_dim, bool enforce_fp32_accumulation = false>
void reduce_tile(uint32_t icb, uint32_t icb_scaler, uint32_t itile, uint32_t itile_scaler, uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/transpose_wh.h (a deprecated forwarder to transpose.h once tt-metal#23835 is in).
#if defined(SOVC_TT_WANT_COMPUTE_TRANSPOSE) && !defined(SOVC_TT_TRANSPOSE_DECLARED)
#define SOVC_TT_TRANSPOSE_DECLARED
namespace ckernel {
void transpose_wh_init_short(uint32_t icb, uint32_t call_line = __builtin_LINE());
void transpose_wh_tile(uint32_t icb, uint32_t itile, uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/compute_kernel_api.h: the SFPU unary ops that live in the umbrella header.
#if defined(SOVC_TT_WANT_COMPUTE_KERNEL_API) && !defined(SOVC_TT_KERNEL_API_DECLARED)
#define SOVC_TT_KERNEL_API_DECLARED
namespace ckernel {
template <bool fast_and_approx = false>
void sigmoid_tile_init();
template <VectorMode vec_mode = VectorMode::RC, bool fast_and_approx = false>
void sigmoid_tile(uint32_t idst);
void silu_tile_init();
void silu_tile(uint32_t idst);
template <bool fast_and_approx = false>
void tanh_tile_init();
template <bool fast_and_approx = false>
void tanh_tile(uint32_t idst);
template <bool fast_and_approx = false>
void log_tile_init();
template <bool fast_and_approx = false>
void log_tile(uint32_t idst);
void abs_tile_init();
void abs_tile(uint32_t idst);
void sign_tile_init();
void sign_tile(uint32_t idst);
void square_tile_init();
void square_tile(uint32_t idst);
void power_tile_init();
void power_tile(uint32_t idst, uint32_t param0);  // the exponent as IEEE-754 float bits
void unary_max_tile_init();
void unary_max_tile(uint32_t idst, uint32_t param0);  // float bits
void unary_min_tile_init();
void unary_min_tile(uint32_t idst, uint32_t param0);  // float bits
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/exp.h
#if defined(SOVC_TT_WANT_COMPUTE_EXP) && !defined(SOVC_TT_EXP_DECLARED)
#define SOVC_TT_EXP_DECLARED
namespace ckernel {
enum class InputClamping : uint8_t { ClampToNegative = 1, None = 0 };
template <bool approx = false, bool fast_and_approx = true, uint32_t scale = 0x3F800000,
          InputClamping input_clamping = InputClamping::ClampToNegative>
void exp_tile_init();
template <bool approx = false, bool fast_and_approx = true, bool scale_en = false, bool skip_positive_check = false,
          InputClamping input_clamping = InputClamping::ClampToNegative, int iterations = 8>
void exp_tile(uint32_t idst, int vector_mode = (int)VectorMode::RC, uint16_t scale = 0x3F80);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/recip.h
#if defined(SOVC_TT_WANT_COMPUTE_RECIP) && !defined(SOVC_TT_RECIP_DECLARED)
#define SOVC_TT_RECIP_DECLARED
namespace ckernel {
template <bool legacy_compat = true>
void recip_tile_init();
template <bool legacy_compat = true>
void recip_tile(uint32_t idst, VectorMode vector_mode = VectorMode::RC);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/sqrt.h
#if defined(SOVC_TT_WANT_COMPUTE_SQRT) && !defined(SOVC_TT_SQRT_DECLARED)
#define SOVC_TT_SQRT_DECLARED
namespace ckernel {
template <bool FAST_APPROX = false>
void sqrt_tile_init();
template <bool FAST_APPROX = false>
void sqrt_tile(uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/rsqrt.h
#if defined(SOVC_TT_WANT_COMPUTE_RSQRT) && !defined(SOVC_TT_RSQRT_DECLARED)
#define SOVC_TT_RSQRT_DECLARED
namespace ckernel {
template <bool legacy_compat = false>
void rsqrt_tile_init();
template <bool legacy_compat = false, bool FAST_APPROX = false>
void rsqrt_tile(uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/gelu.h
#if defined(SOVC_TT_WANT_COMPUTE_GELU) && !defined(SOVC_TT_GELU_DECLARED)
#define SOVC_TT_GELU_DECLARED
namespace ckernel {
template <bool fast_and_approx = true>
void gelu_tile_init();
template <bool fast_and_approx = true>
void gelu_tile(uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/relu.h
#if defined(SOVC_TT_WANT_COMPUTE_RELU) && !defined(SOVC_TT_RELU_DECLARED)
#define SOVC_TT_RELU_DECLARED
namespace ckernel {
void relu_tile_init();
void relu_tile(uint32_t idst);
void leaky_relu_tile_init();
void leaky_relu_tile(uint32_t idst, uint32_t slope = 0);  // slope as float bits
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/erf_erfc.h
#if defined(SOVC_TT_WANT_COMPUTE_ERF) && !defined(SOVC_TT_ERF_DECLARED)
#define SOVC_TT_ERF_DECLARED
namespace ckernel {
template <bool fast_and_approx = true>
void erf_tile_init();
template <bool fast_and_approx = true>
void erf_tile(uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/negative.h
#if defined(SOVC_TT_WANT_COMPUTE_NEGATIVE) && !defined(SOVC_TT_NEGATIVE_DECLARED)
#define SOVC_TT_NEGATIVE_DECLARED
namespace ckernel {
void negative_tile_init();
void negative_tile(uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/trigonometry.h
#if defined(SOVC_TT_WANT_COMPUTE_TRIG) && !defined(SOVC_TT_TRIG_DECLARED)
#define SOVC_TT_TRIG_DECLARED
namespace ckernel {
void sin_tile_init();
void sin_tile(uint32_t idst);
void cos_tile_init();
void cos_tile(uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/rounding.h (the shared rounding_op_tile_init of the release; later
// trees replace it with per-op inits such as floor_tile_init).
#if defined(SOVC_TT_WANT_COMPUTE_ROUNDING) && !defined(SOVC_TT_ROUNDING_DECLARED)
#define SOVC_TT_ROUNDING_DECLARED
namespace ckernel {
void rounding_op_tile_init();
void floor_tile(uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/typecast.h: data-format conversion in Dst (IN_DTYPE and OUT_DTYPE
// are tt::DataFormat values).
#if defined(SOVC_TT_WANT_COMPUTE_TYPECAST) && !defined(SOVC_TT_TYPECAST_DECLARED)
#define SOVC_TT_TYPECAST_DECLARED
namespace ckernel {
template <uint32_t IN_DTYPE, uint32_t OUT_DTYPE>
void typecast_tile_init();
template <uint32_t IN_DTYPE, uint32_t OUT_DTYPE>
void typecast_tile(uint32_t idst);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/binop_with_scalar.h: Dst tile op a float scalar given as its bits.
#if defined(SOVC_TT_WANT_COMPUTE_BINOP_SCALAR) && !defined(SOVC_TT_BINOP_SCALAR_DECLARED)
#define SOVC_TT_BINOP_SCALAR_DECLARED
namespace ckernel {
void binop_with_scalar_tile_init();
template <bool is_fp32_dest_acc_en = false>
void add_unary_tile(uint32_t idst, uint32_t param1);
template <bool is_fp32_dest_acc_en = false>
void mul_unary_tile(uint32_t idst, uint32_t param1);
template <bool is_fp32_dest_acc_en = false>
void rsub_unary_tile(uint32_t idst, uint32_t param1);
}  // namespace ckernel
#endif

// tt_metal/hw/inc/api/compute/eltwise_unary/elu.h
#if defined(SOVC_TT_WANT_COMPUTE_ELU) && !defined(SOVC_TT_ELU_DECLARED)
#define SOVC_TT_ELU_DECLARED
namespace ckernel {
void elu_tile_init();
void elu_tile(uint32_t idst, uint32_t param0);  // alpha as float bits
}  // namespace ckernel
#endif
