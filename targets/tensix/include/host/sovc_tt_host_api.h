// sovc_tt_host_api.h: declarations of the part of the TT-Metalium host API (tt-metal v0.74.0) that the host
// program sovc generates (host/main.cpp, host/host_ops.cpp) uses, so `g++ -std=c++20 -fsyntax-only
// -I targets/tensix/include/host main.cpp` checks it without a tt-metal installation.
//
// Written for sovc from reading tt-metal's public headers (tt_metal/api/tt-metalium/host_api.hpp,
// circular_buffer_config.hpp, kernel_types.hpp, core_coord.hpp, base_types.hpp, tensor_accessor_args.hpp,
// distributed.hpp, mesh_buffer.hpp, mesh_workload.hpp, mesh_command_queue.hpp, mesh_device.hpp). It is a
// faithful subset, not the API: only what the generated host calls, with the same names, namespaces, argument
// order and aggregate member order (designated initialisers depend on it). Where tt-metal takes a span or a
// variant, a type the generated code passes converts to it the same way here (std::vector, the config structs).
// No bodies: the check is -fsyntax-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

// base_types.hpp: fidelity of the matrix engine.
enum class MathFidelity : uint8_t { LoFi = 0, HiFi2 = 2, HiFi3 = 3, HiFi4 = 4, Invalid = 0xff };

namespace tt {

// tt_backend_api_types.hpp (the names sovc emits; values as in tt-metal).
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

namespace tt_metal {

using DeviceAddr = uint64_t;
using KernelHandle = uint32_t;
using CBHandle = uintptr_t;

// core_coord.hpp: logical worker cores.
struct CoreCoord {
    std::size_t x = 0;
    std::size_t y = 0;
    CoreCoord();
    CoreCoord(std::size_t x, std::size_t y);
};

struct CoreRange {
    CoreCoord start_coord;
    CoreCoord end_coord;
    CoreRange(const CoreCoord& start, const CoreCoord& end);
    bool operator<(const CoreRange& other) const;
};

class CoreRangeSet {
public:
    CoreRangeSet();
    explicit CoreRangeSet(const std::set<CoreRange>& core_ranges);
    CoreRangeSet(const CoreRange& core_range);
};

// buffer_types.hpp
enum class BufferType { DRAM, L1, SYSTEM_MEMORY, L1_SMALL, TRACE };

// kernel_types.hpp / data_types.hpp: which RISC-V a data-movement kernel runs on and its NoC.
enum class DataMovementProcessor { RISCV_0 = 0, RISCV_1 = 1 };
enum NOC : uint8_t { RISCV_0_default = 0, RISCV_1_default = 1, NOC_0 = 0, NOC_1 = 1 };
enum NOC_MODE : uint8_t { DM_DEDICATED_NOC = 0, DM_DYNAMIC_NOC = 1 };

struct DataMovementConfig {
    DataMovementProcessor processor = DataMovementProcessor::RISCV_0;
    NOC noc = NOC::RISCV_0_default;
    NOC_MODE noc_mode = NOC_MODE::DM_DEDICATED_NOC;
    std::vector<uint32_t> compile_args;
    std::map<std::string, std::string> defines;
};

// kernel_types.hpp / base_types.hpp: how copy_tile moves a circular buffer's tiles into Dst.
enum class UnpackToDestMode : uint8_t { UnpackToDestFp32, Default };
constexpr uint32_t NUM_CIRCULAR_BUFFERS = 32;

struct ComputeConfig {
    MathFidelity math_fidelity = MathFidelity::HiFi4;
    bool fp32_dest_acc_en = false;
    bool dst_full_sync_en = false;
    std::vector<UnpackToDestMode> unpack_to_dest_mode;
    bool bfp8_pack_precise = false;
    bool math_approx_mode = false;
    std::vector<uint32_t> compile_args;
    std::map<std::string, std::string> defines;
};

struct EthernetConfig {};

// program.hpp / host_api.hpp
class Program {
public:
    Program();
    Program(Program&&) noexcept;
    Program& operator=(Program&&) noexcept;
};

Program CreateProgram();

// circular_buffer_config.hpp
class CircularBufferConfig {
public:
    CircularBufferConfig(uint32_t total_size, const std::map<uint8_t, tt::DataFormat>& data_format_spec);
    CircularBufferConfig& set_page_size(uint8_t buffer_index, uint32_t page_size);
};

CBHandle CreateCircularBuffer(
    Program& program,
    const std::variant<CoreCoord, CoreRange, CoreRangeSet>& core_spec,
    const CircularBufferConfig& config);

KernelHandle CreateKernel(
    Program& program,
    const std::string& file_name,
    const std::variant<CoreCoord, CoreRange, CoreRangeSet>& core_spec,
    const std::variant<DataMovementConfig, ComputeConfig, EthernetConfig>& config);

// Returns the semaphore's id (get_semaphore(id) in the kernels); ids count up from 0 per program.
uint32_t CreateSemaphore(
    Program& program, const std::variant<CoreRange, CoreRangeSet>& core_spec, uint32_t initial_value);

void SetRuntimeArgs(
    const Program& program,
    KernelHandle kernel,
    const std::variant<CoreCoord, CoreRange, CoreRangeSet>& core_spec,
    const std::vector<uint32_t>& runtime_args);  // a stl::Span<const uint32_t> in tt-metal

namespace distributed {

// mesh_device.hpp, mesh_coord.hpp
class MeshShape {};
class MeshCoordinateRange {
public:
    explicit MeshCoordinateRange(const MeshShape& shape);
};

class MeshCommandQueue;

class MeshDevice {
public:
    static std::shared_ptr<MeshDevice> create_unit_mesh(int device_id);
    MeshCommandQueue& mesh_command_queue(std::optional<uint8_t> cq_id = std::nullopt);
    const MeshShape& shape() const;
    bool close();
    // From IDevice: the NoC (virtual) coordinates of a logical worker core.
    CoreCoord worker_core_from_logical_core(const CoreCoord& logical_core) const;
};

// mesh_buffer.hpp
struct DeviceLocalBufferConfig {
    DeviceAddr page_size = 0;
    BufferType buffer_type = BufferType::DRAM;
    bool bottom_up = false;
};

struct ReplicatedBufferConfig {
    DeviceAddr size = 0;
};

class MeshBuffer {
public:
    static std::shared_ptr<MeshBuffer> create(
        const ReplicatedBufferConfig& mesh_buffer_config,
        const DeviceLocalBufferConfig& device_local_config,
        MeshDevice* mesh_device,
        std::optional<DeviceAddr> address = std::nullopt);
    DeviceAddr address() const;
    DeviceAddr size() const;
};

// mesh_workload.hpp
class MeshWorkload {
public:
    MeshWorkload();
    void add_program(const MeshCoordinateRange& device_range, Program&& program);
};

// distributed.hpp
template <typename DType>
void EnqueueWriteMeshBuffer(
    MeshCommandQueue& mesh_cq, std::shared_ptr<MeshBuffer>& mesh_buffer, std::vector<DType>& src, bool blocking = false);
template <typename DType>
void EnqueueReadMeshBuffer(
    MeshCommandQueue& mesh_cq, std::vector<DType>& dst, std::shared_ptr<MeshBuffer>& mesh_buffer, bool blocking = true);
void EnqueueMeshWorkload(MeshCommandQueue& mesh_cq, MeshWorkload& mesh_workload, bool blocking);
void Finish(MeshCommandQueue& mesh_cq);

}  // namespace distributed

// tensor_accessor_args.hpp: a buffer's layout as kernel compile-time arguments.
class TensorAccessorArgs {
public:
    explicit TensorAccessorArgs(const distributed::MeshBuffer& buffer);
    void append_to(std::vector<uint32_t>& compile_time_args) const;
};

}  // namespace tt_metal
}  // namespace tt
