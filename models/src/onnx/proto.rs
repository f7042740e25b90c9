//! ONNX protobuf messages, written by hand as `prost` structs.
//!
//! sovc reads `.onnx` files (a serialized [`ModelProto`]) and ONNX test data
//! (`*.pb`, a serialized [`TensorProto`], [`SequenceProto`], ...) without a
//! `protoc` / `prost-build` step at build time, so the message types live here
//! as plain Rust.
//!
//! This file mirrors `onnx.proto` of the onnx 1.22 Python package (IR version
//! 13, `Version::IrVersion`), with the ONNX-ML additions of `onnx-ml.proto`
//! (`TypeProto.Opaque`), the value messages of `onnx-data.proto`
//! (`SequenceProto`, `MapProto`, `OptionalProto`) and the operator-set messages
//! of `onnx-operators.proto`. Every message, field number and field type
//! matches the schema; nested messages, enums and oneofs live in a
//! `snake_case` module named after their parent message, as `prost-build`
//! would lay them out.
//!
//! The schema is `proto2`:
//! - `optional` scalars are `Option<T>`, so presence is kept (`prost` also
//!   derives accessors, e.g. [`NodeProto::op_type`], returning the default
//!   when unset);
//! - `repeated` numeric fields are unpacked on encode unless the schema says
//!   `[packed = true]`; decoding accepts both forms either way;
//! - enum-typed fields are stored as `i32` (unknown values survive a
//!   round trip) with typed accessors such as [`TensorProto::data_location`];
//! - fields this file does not know are skipped on decode.

// ---------------------------------------------------------------------------
// onnx.proto: top-level enums
// ---------------------------------------------------------------------------

/// IR versions of the ONNX format (`onnx.Version`); `IrVersion` is the newest.
// Variant names mirror the schema's (`_START_VERSION`, `IR_VERSION`).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum Version {
    /// Placeholder zero value (`_START_VERSION`).
    StartVersion = 0,
    /// IR version 1, Oct 10 2017.
    IrVersion20171010 = 1,
    /// IR version 2, Oct 30 2017: attribute type discriminator.
    IrVersion20171030 = 2,
    /// IR version 3, Nov 3 2017: operator sets, node domains.
    IrVersion2017113 = 3,
    /// IR version 4, Jan 22 2019: `BFLOAT16`, initializers need not be inputs.
    IrVersion2019122 = 4,
    /// IR version 5, Mar 18 2019: quantization annotations.
    IrVersion2019318 = 5,
    /// IR version 6, Sep 19 2019: sparse tensors.
    IrVersion2019919 = 6,
    /// IR version 7, May 8 2020: training info.
    IrVersion202058 = 7,
    /// IR version 8, Jul 30 2021: sparse/optional types, model-local functions.
    IrVersion2021730 = 8,
    /// IR version 9, May 5 2023: function attribute defaults, float8 types.
    IrVersion202355 = 9,
    /// IR version 10, Mar 25 2024: int4/uint4, overloads, metadata props.
    IrVersion2024325 = 10,
    /// IR version 11, May 12 2025: `FLOAT4E2M1`, multi-device messages.
    IrVersion20250512 = 11,
    /// IR version 12, Aug 26 2025: `FLOAT8E8M0`.
    IrVersion20250826 = 12,
    /// IR version 13, Nov 6 2025: `INT2`/`UINT2` (the current `IR_VERSION`).
    IrVersion = 13,
}

impl Version {
    /// The name of this value in the schema, e.g. `"IR_VERSION"`.
    #[must_use]
    pub fn as_str_name(&self) -> &'static str {
        match self {
            Self::StartVersion => "_START_VERSION",
            Self::IrVersion20171010 => "IR_VERSION_2017_10_10",
            Self::IrVersion20171030 => "IR_VERSION_2017_10_30",
            Self::IrVersion2017113 => "IR_VERSION_2017_11_3",
            Self::IrVersion2019122 => "IR_VERSION_2019_1_22",
            Self::IrVersion2019318 => "IR_VERSION_2019_3_18",
            Self::IrVersion2019919 => "IR_VERSION_2019_9_19",
            Self::IrVersion202058 => "IR_VERSION_2020_5_8",
            Self::IrVersion2021730 => "IR_VERSION_2021_7_30",
            Self::IrVersion202355 => "IR_VERSION_2023_5_5",
            Self::IrVersion2024325 => "IR_VERSION_2024_3_25",
            Self::IrVersion20250512 => "IR_VERSION_2025_05_12",
            Self::IrVersion20250826 => "IR_VERSION_2025_08_26",
            Self::IrVersion => "IR_VERSION",
        }
    }

    /// The value with schema name `value`, if any.
    #[must_use]
    pub fn from_str_name(value: &str) -> Option<Self> {
        match value {
            "_START_VERSION" => Some(Self::StartVersion),
            "IR_VERSION_2017_10_10" => Some(Self::IrVersion20171010),
            "IR_VERSION_2017_10_30" => Some(Self::IrVersion20171030),
            "IR_VERSION_2017_11_3" => Some(Self::IrVersion2017113),
            "IR_VERSION_2019_1_22" => Some(Self::IrVersion2019122),
            "IR_VERSION_2019_3_18" => Some(Self::IrVersion2019318),
            "IR_VERSION_2019_9_19" => Some(Self::IrVersion2019919),
            "IR_VERSION_2020_5_8" => Some(Self::IrVersion202058),
            "IR_VERSION_2021_7_30" => Some(Self::IrVersion2021730),
            "IR_VERSION_2023_5_5" => Some(Self::IrVersion202355),
            "IR_VERSION_2024_3_25" => Some(Self::IrVersion2024325),
            "IR_VERSION_2025_05_12" => Some(Self::IrVersion20250512),
            "IR_VERSION_2025_08_26" => Some(Self::IrVersion20250826),
            "IR_VERSION" => Some(Self::IrVersion),
            _ => None,
        }
    }
}

/// Status of an operator or function (`onnx.OperatorStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum OperatorStatus {
    /// Experimental.
    Experimental = 0,
    /// Stable.
    Stable = 1,
}

impl OperatorStatus {
    /// The name of this value in the schema, e.g. `"STABLE"`.
    #[must_use]
    pub fn as_str_name(&self) -> &'static str {
        match self {
            Self::Experimental => "EXPERIMENTAL",
            Self::Stable => "STABLE",
        }
    }

    /// The value with schema name `value`, if any.
    #[must_use]
    pub fn from_str_name(value: &str) -> Option<Self> {
        match value {
            "EXPERIMENTAL" => Some(Self::Experimental),
            "STABLE" => Some(Self::Stable),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// onnx.proto: attributes, values, nodes
// ---------------------------------------------------------------------------

/// A named attribute of a node or function: one value, or one list of values, of the kind given by `type`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AttributeProto {
    /// Attribute name (must be present).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// In a function body: the name of the caller's attribute this one refers to.
    #[prost(string, optional, tag = "21")]
    pub ref_attr_name: Option<String>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "13")]
    pub doc_string: Option<String>,
    /// Which value field below is in use.
    #[prost(enumeration = "attribute_proto::AttributeType", optional, tag = "20")]
    pub r#type: Option<i32>,
    /// Float value.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// Integer value.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// UTF-8 string value, as bytes.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// Tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Graph value (subgraph of control-flow ops).
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    /// Sparse tensor value.
    #[prost(message, optional, tag = "22")]
    pub sparse_tensor: Option<SparseTensorProto>,
    /// Type value.
    #[prost(message, optional, tag = "14")]
    pub tp: Option<TypeProto>,
    /// List of floats.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// List of integers.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// List of UTF-8 strings, as bytes.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// List of tensors.
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    /// List of graphs.
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
    /// List of sparse tensors.
    #[prost(message, repeated, tag = "23")]
    pub sparse_tensors: Vec<SparseTensorProto>,
    /// List of types.
    #[prost(message, repeated, tag = "15")]
    pub type_protos: Vec<TypeProto>,
}

/// Nested types of [`AttributeProto`].
pub mod attribute_proto {
    /// Kind of value an attribute holds (`AttributeProto.AttributeType`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum AttributeType {
        /// Not set.
        Undefined = 0,
        /// `f`.
        Float = 1,
        /// `i`.
        Int = 2,
        /// `s`.
        String = 3,
        /// `t`.
        Tensor = 4,
        /// `g`.
        Graph = 5,
        /// `sparse_tensor`.
        SparseTensor = 11,
        /// `tp`.
        TypeProto = 13,
        /// `floats`.
        Floats = 6,
        /// `ints`.
        Ints = 7,
        /// `strings`.
        Strings = 8,
        /// `tensors`.
        Tensors = 9,
        /// `graphs`.
        Graphs = 10,
        /// `sparse_tensors`.
        SparseTensors = 12,
        /// `type_protos`.
        TypeProtos = 14,
    }

    impl AttributeType {
        /// The name of this value in the schema, e.g. `"INTS"`.
        #[must_use]
        pub fn as_str_name(&self) -> &'static str {
            match self {
                Self::Undefined => "UNDEFINED",
                Self::Float => "FLOAT",
                Self::Int => "INT",
                Self::String => "STRING",
                Self::Tensor => "TENSOR",
                Self::Graph => "GRAPH",
                Self::SparseTensor => "SPARSE_TENSOR",
                Self::TypeProto => "TYPE_PROTO",
                Self::Floats => "FLOATS",
                Self::Ints => "INTS",
                Self::Strings => "STRINGS",
                Self::Tensors => "TENSORS",
                Self::Graphs => "GRAPHS",
                Self::SparseTensors => "SPARSE_TENSORS",
                Self::TypeProtos => "TYPE_PROTOS",
            }
        }

        /// The value with schema name `value`, if any.
        #[must_use]
        pub fn from_str_name(value: &str) -> Option<Self> {
            match value {
                "UNDEFINED" => Some(Self::Undefined),
                "FLOAT" => Some(Self::Float),
                "INT" => Some(Self::Int),
                "STRING" => Some(Self::String),
                "TENSOR" => Some(Self::Tensor),
                "GRAPH" => Some(Self::Graph),
                "SPARSE_TENSOR" => Some(Self::SparseTensor),
                "TYPE_PROTO" => Some(Self::TypeProto),
                "FLOATS" => Some(Self::Floats),
                "INTS" => Some(Self::Ints),
                "STRINGS" => Some(Self::Strings),
                "TENSORS" => Some(Self::Tensors),
                "GRAPHS" => Some(Self::Graphs),
                "SPARSE_TENSORS" => Some(Self::SparseTensors),
                "TYPE_PROTOS" => Some(Self::TypeProtos),
                _ => None,
            }
        }
    }
}

/// Name, type and shape of a value (graph input, output or intermediate).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ValueInfoProto {
    /// Value name (must be present).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Type (must be present for top-level graph inputs and outputs).
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
    /// Named metadata; keys should be distinct.
    #[prost(message, repeated, tag = "4")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// One operator invocation in a graph: `op_type` of `domain` applied to named inputs, producing named outputs.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NodeProto {
    /// Input value names (empty string = omitted optional input).
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Optional node name.
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// Operator name.
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// Operator-set domain of `op_type` (empty = default ONNX domain).
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// Overload identifier, to pick a model-local function.
    #[prost(string, optional, tag = "8")]
    pub overload: Option<String>,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// Named metadata; keys should be distinct.
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Multi-device annotations.
    #[prost(message, repeated, tag = "10")]
    pub device_configurations: Vec<NodeDeviceConfigurationProto>,
}

/// A key with a list of integers: one entry of an int-to-int-list map.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IntIntListEntryProto {
    /// Key.
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    /// Values.
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub value: Vec<i64>,
}

/// Multi-device configuration of one node (sharding and pipeline stage).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NodeDeviceConfigurationProto {
    /// Name of a [`DeviceConfigurationProto`] of the model.
    #[prost(string, optional, tag = "1")]
    pub configuration_id: Option<String>,
    /// Sharding of the node's inputs and outputs.
    #[prost(message, repeated, tag = "2")]
    pub sharding_spec: Vec<ShardingSpecProto>,
    /// Pipeline stage of the node.
    #[prost(int32, optional, tag = "3")]
    pub pipeline_stage: Option<i32>,
}

/// How one input or output tensor of a node is sharded across devices.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ShardingSpecProto {
    /// The node input or output being sharded.
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    /// Devices (or device groups) across which the tensor is sharded or replicated.
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub device: Vec<i64>,
    /// Entries of `device` that stand for device groups, with the group members.
    #[prost(message, repeated, tag = "3")]
    pub index_to_device_group_map: Vec<IntIntListEntryProto>,
    /// Sharding of each axis.
    #[prost(message, repeated, tag = "4")]
    pub sharded_dim: Vec<ShardedDimProto>,
}

/// Sharding of one axis of a sharded tensor.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ShardedDimProto {
    /// The axis, in `[-r, r - 1]`.
    #[prost(int64, optional, tag = "1")]
    pub axis: Option<i64>,
    /// How the axis is split (several entries when axes were fused by a reshape).
    #[prost(message, repeated, tag = "2")]
    pub simple_sharding: Vec<SimpleShardedDimProto>,
}

/// A dimension of N blocks (constant or symbolic) split into `num_shards` shards.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SimpleShardedDimProto {
    /// Number of shards to split the dimension into.
    #[prost(int64, optional, tag = "3")]
    pub num_shards: Option<i64>,
    /// The dimension being sharded.
    #[prost(oneof = "simple_sharded_dim_proto::Dim", tags = "1, 2")]
    pub dim: Option<simple_sharded_dim_proto::Dim>,
}

/// Nested types of [`SimpleShardedDimProto`].
pub mod simple_sharded_dim_proto {
    /// The dimension being sharded: a constant or a symbol.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Dim {
        /// Constant dimension.
        #[prost(int64, tag = "1")]
        DimValue(i64),
        /// Symbolic dimension.
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

// ---------------------------------------------------------------------------
// onnx.proto: training, models, graphs
// ---------------------------------------------------------------------------

/// Training information: an initialization graph and one training-algorithm step.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TrainingInfoProto {
    /// Graph computing initial values of the trainable tensors.
    #[prost(message, optional, tag = "1")]
    pub initialization: Option<GraphProto>,
    /// Graph of one training step, combined with the inference graph.
    #[prost(message, optional, tag = "2")]
    pub algorithm: Option<GraphProto>,
    /// Initializer name -> `initialization` output that sets it.
    #[prost(message, repeated, tag = "3")]
    pub initialization_binding: Vec<StringStringEntryProto>,
    /// Initializer name -> `algorithm` output that updates it.
    #[prost(message, repeated, tag = "4")]
    pub update_binding: Vec<StringStringEntryProto>,
}

/// A whole ONNX model: the top-level message of an `.onnx` file.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ModelProto {
    /// IR version the model targets (see [`Version`]).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Operator sets the model imports; at least one.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Tool that produced the model.
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// Version of that tool.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS domain of the model.
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// Version of the model.
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The main graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Named metadata; keys should be distinct.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Training information.
    #[prost(message, repeated, tag = "20")]
    pub training_info: Vec<TrainingInfoProto>,
    /// Model-local functions; `(domain, name, overload)` unique.
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
    /// Multi-device configurations.
    #[prost(message, repeated, tag = "26")]
    pub configuration: Vec<DeviceConfigurationProto>,
}

/// A named multi-device configuration of a model.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct DeviceConfigurationProto {
    /// Configuration name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Number of devices.
    #[prost(int32, optional, tag = "2")]
    pub num_devices: Option<i32>,
    /// Optional device names (`num_devices` of them when given).
    #[prost(string, repeated, tag = "3")]
    pub device: Vec<String>,
}

/// A string key/value pair: one entry of a string-to-string map.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Quantization parameters of a tensor, e.g. `SCALE_TENSOR` / `ZERO_POINT_TENSOR` names.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorAnnotation {
    /// The annotated tensor.
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    /// Parameter key -> name of the tensor holding it.
    #[prost(message, repeated, tag = "2")]
    pub quant_parameter_tensor_names: Vec<StringStringEntryProto>,
}

/// A computation graph: topologically sorted nodes, initializers, inputs and outputs.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GraphProto {
    /// Nodes, in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Named constant tensors.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Named constant tensors in sparse form.
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// Graph inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Types and shapes of intermediate values (optional per value).
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    /// Quantization parameter tensors of tensors in the graph.
    #[prost(message, repeated, tag = "14")]
    pub quantization_annotation: Vec<TensorAnnotation>,
    /// Named metadata; keys should be distinct.
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

// ---------------------------------------------------------------------------
// onnx.proto: tensors, shapes, types
// ---------------------------------------------------------------------------

/// A serialized dense tensor: shape, element type and data (inline, raw or external).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type, a [`tensor_proto::DataType`] value.
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// The chunk of a large tensor this message holds.
    #[prost(message, optional, tag = "3")]
    pub segment: Option<tensor_proto::Segment>,
    /// `FLOAT` and `COMPLEX64` (real, imaginary interleaved) elements.
    #[prost(float, repeated, packed = "true", tag = "4")]
    pub float_data: Vec<f32>,
    /// `INT32` and all narrower types (bit patterns for 16/8/4/2-bit floats and ints).
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub int32_data: Vec<i32>,
    /// `STRING` elements, UTF-8 bytes.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// `INT64` elements.
    #[prost(int64, repeated, packed = "true", tag = "7")]
    pub int64_data: Vec<i64>,
    /// Tensor name (required for initializers).
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "12")]
    pub doc_string: Option<String>,
    /// Elements as fixed-width little-endian bytes (any type but `STRING`).
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    /// External data location: `location`, `offset`, `length`, `checksum`.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// Whether the data is inline or external.
    #[prost(enumeration = "tensor_proto::DataLocation", optional, tag = "14")]
    pub data_location: Option<i32>,
    /// `DOUBLE` and `COMPLEX128` (real, imaginary interleaved) elements.
    #[prost(double, repeated, packed = "true", tag = "10")]
    pub double_data: Vec<f64>,
    /// `UINT32` and `UINT64` elements.
    #[prost(uint64, repeated, packed = "true", tag = "11")]
    pub uint64_data: Vec<u64>,
    /// Named metadata; keys should be distinct.
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// Nested types of [`TensorProto`].
pub mod tensor_proto {
    /// Range `[begin, end)` of a large tensor stored in one message.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Segment {
        /// First element.
        #[prost(int64, optional, tag = "1")]
        pub begin: Option<i64>,
        /// One past the last element.
        #[prost(int64, optional, tag = "2")]
        pub end: Option<i64>,
    }

    /// Element types of tensors (`TensorProto.DataType`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set.
        Undefined = 0,
        /// IEEE 754 binary32.
        Float = 1,
        /// `u8`.
        Uint8 = 2,
        /// `i8`.
        Int8 = 3,
        /// `u16`.
        Uint16 = 4,
        /// `i16`.
        Int16 = 5,
        /// `i32`.
        Int32 = 6,
        /// `i64`.
        Int64 = 7,
        /// UTF-8 string.
        String = 8,
        /// Boolean, one byte each.
        Bool = 9,
        /// IEEE 754 binary16.
        Float16 = 10,
        /// IEEE 754 binary64.
        Double = 11,
        /// `u32`.
        Uint32 = 12,
        /// `u64`.
        Uint64 = 13,
        /// Complex of two binary32.
        Complex64 = 14,
        /// Complex of two binary64.
        Complex128 = 15,
        /// bfloat16 (1 sign, 8 exponent, 7 mantissa bits).
        Bfloat16 = 16,
        /// float8 e4m3, NaN but no infinities.
        Float8e4m3fn = 17,
        /// float8 e4m3, NaN, no infinities, no negative zero.
        Float8e4m3fnuz = 18,
        /// float8 e5m2, IEEE-like with NaN and infinities.
        Float8e5m2 = 19,
        /// float8 e5m2, NaN, no infinities, no negative zero.
        Float8e5m2fnuz = 20,
        /// 4-bit unsigned integer, two per byte.
        Uint4 = 21,
        /// 4-bit signed integer, two per byte.
        Int4 = 22,
        /// float4 e2m1, two per byte.
        Float4e2m1 = 23,
        /// float8 e8m0, the scale type of microscaling (MX) formats.
        Float8e8m0 = 24,
        /// 2-bit unsigned integer, four per byte.
        Uint2 = 25,
        /// 2-bit signed integer, four per byte.
        Int2 = 26,
    }

    impl DataType {
        /// The name of this value in the schema, e.g. `"FLOAT16"`.
        #[must_use]
        pub fn as_str_name(&self) -> &'static str {
            match self {
                Self::Undefined => "UNDEFINED",
                Self::Float => "FLOAT",
                Self::Uint8 => "UINT8",
                Self::Int8 => "INT8",
                Self::Uint16 => "UINT16",
                Self::Int16 => "INT16",
                Self::Int32 => "INT32",
                Self::Int64 => "INT64",
                Self::String => "STRING",
                Self::Bool => "BOOL",
                Self::Float16 => "FLOAT16",
                Self::Double => "DOUBLE",
                Self::Uint32 => "UINT32",
                Self::Uint64 => "UINT64",
                Self::Complex64 => "COMPLEX64",
                Self::Complex128 => "COMPLEX128",
                Self::Bfloat16 => "BFLOAT16",
                Self::Float8e4m3fn => "FLOAT8E4M3FN",
                Self::Float8e4m3fnuz => "FLOAT8E4M3FNUZ",
                Self::Float8e5m2 => "FLOAT8E5M2",
                Self::Float8e5m2fnuz => "FLOAT8E5M2FNUZ",
                Self::Uint4 => "UINT4",
                Self::Int4 => "INT4",
                Self::Float4e2m1 => "FLOAT4E2M1",
                Self::Float8e8m0 => "FLOAT8E8M0",
                Self::Uint2 => "UINT2",
                Self::Int2 => "INT2",
            }
        }

        /// The value with schema name `value`, if any.
        #[must_use]
        pub fn from_str_name(value: &str) -> Option<Self> {
            match value {
                "UNDEFINED" => Some(Self::Undefined),
                "FLOAT" => Some(Self::Float),
                "UINT8" => Some(Self::Uint8),
                "INT8" => Some(Self::Int8),
                "UINT16" => Some(Self::Uint16),
                "INT16" => Some(Self::Int16),
                "INT32" => Some(Self::Int32),
                "INT64" => Some(Self::Int64),
                "STRING" => Some(Self::String),
                "BOOL" => Some(Self::Bool),
                "FLOAT16" => Some(Self::Float16),
                "DOUBLE" => Some(Self::Double),
                "UINT32" => Some(Self::Uint32),
                "UINT64" => Some(Self::Uint64),
                "COMPLEX64" => Some(Self::Complex64),
                "COMPLEX128" => Some(Self::Complex128),
                "BFLOAT16" => Some(Self::Bfloat16),
                "FLOAT8E4M3FN" => Some(Self::Float8e4m3fn),
                "FLOAT8E4M3FNUZ" => Some(Self::Float8e4m3fnuz),
                "FLOAT8E5M2" => Some(Self::Float8e5m2),
                "FLOAT8E5M2FNUZ" => Some(Self::Float8e5m2fnuz),
                "UINT4" => Some(Self::Uint4),
                "INT4" => Some(Self::Int4),
                "FLOAT4E2M1" => Some(Self::Float4e2m1),
                "FLOAT8E8M0" => Some(Self::Float8e8m0),
                "UINT2" => Some(Self::Uint2),
                "INT2" => Some(Self::Int2),
                _ => None,
            }
        }
    }

    /// Where a tensor's data lives (`TensorProto.DataLocation`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum DataLocation {
        /// In this message: `raw_data` if set, else the typed `*_data` field.
        Default = 0,
        /// In an external file described by `external_data`.
        External = 1,
    }

    impl DataLocation {
        /// The name of this value in the schema, e.g. `"EXTERNAL"`.
        #[must_use]
        pub fn as_str_name(&self) -> &'static str {
            match self {
                Self::Default => "DEFAULT",
                Self::External => "EXTERNAL",
            }
        }

        /// The value with schema name `value`, if any.
        #[must_use]
        pub fn from_str_name(value: &str) -> Option<Self> {
            match value {
                "DEFAULT" => Some(Self::Default),
                "EXTERNAL" => Some(Self::External),
                _ => None,
            }
        }
    }
}

/// A serialized sparse tensor: non-default values, their indices and the dense shape.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SparseTensorProto {
    /// The `[NNZ]` non-default values; its name names the sparse tensor.
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
    /// Indices, `[NNZ, rank]` or linearized `[NNZ]`, in ascending order.
    #[prost(message, optional, tag = "2")]
    pub indices: Option<TensorProto>,
    /// Shape of the dense tensor.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

/// A tensor shape: a list of dimensions, each a constant, a symbol or unknown.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One dimension of a shape: a constant, a symbol, or neither (unknown).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Dimension {
        /// Standard denotation of the dimension (e.g. `DATA_BATCH`).
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
        /// The dimension's value, if known.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// A dimension's value: a constant or a symbol.
        #[derive(Clone, PartialEq, ::prost::Oneof)]
        pub enum Value {
            /// Constant dimension.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// Symbolic dimension.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// The type of a value: tensor, sequence, map, optional, sparse tensor or opaque.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TypeProto {
    /// Standard denotation of the type (e.g. `IMAGE`).
    #[prost(string, optional, tag = "6")]
    pub denotation: Option<String>,
    /// The type itself.
    #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 9, 8, 7")]
    pub value: Option<type_proto::Value>,
}

/// Nested types of [`TypeProto`].
pub mod type_proto {
    /// A dense tensor type: element type and optional shape.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Tensor {
        /// Element type, a [`super::tensor_proto::DataType`] value (not `UNDEFINED`).
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// Shape; absent means unknown rank.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// A sequence type: `seq(elem_type)`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Sequence {
        /// Type of each element.
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<super::TypeProto>>,
    }

    /// A map type: `map(key_type, value_type)`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Map {
        /// Key type, an integral or `STRING` [`super::tensor_proto::DataType`] value.
        #[prost(int32, optional, tag = "1")]
        pub key_type: Option<i32>,
        /// Value type.
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<super::TypeProto>>,
    }

    /// An optional type: `optional(elem_type)`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Optional {
        /// Type of the wrapped value.
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<super::TypeProto>>,
    }

    /// A sparse tensor type: element type and optional shape.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct SparseTensor {
        /// Element type, a [`super::tensor_proto::DataType`] value (not `UNDEFINED`).
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// Shape; absent means unknown rank.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// An opaque type named by domain and name (ONNX-ML, `onnx-ml.proto`).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Opaque {
        /// Domain; when absent, the model's domain.
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        /// Type name.
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
    }

    /// Which kind of type a [`super::TypeProto`] is.
    // Variant names mirror the schema's field names (`tensor_type`, ...).
    #[allow(clippy::enum_variant_names)]
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Value {
        /// Dense tensor.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        /// Sequence.
        #[prost(message, tag = "4")]
        SequenceType(Sequence),
        /// Map.
        #[prost(message, tag = "5")]
        MapType(Map),
        /// Optional.
        #[prost(message, tag = "9")]
        OptionalType(Optional),
        /// Sparse tensor.
        #[prost(message, tag = "8")]
        SparseTensorType(SparseTensor),
        /// Opaque (ONNX-ML).
        #[prost(message, tag = "7")]
        OpaqueType(Opaque),
    }
}

// ---------------------------------------------------------------------------
// onnx.proto: operator sets and functions
// ---------------------------------------------------------------------------

/// An imported operator set: `(domain, version)`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OperatorSetIdProto {
    /// Domain; empty or absent means the default ONNX domain.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// Operator-set version.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// A function: a named, reusable body of nodes with inputs, outputs and attributes.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FunctionProto {
    /// Function name (like `NodeProto::op_type`).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Input names.
    #[prost(string, repeated, tag = "4")]
    pub input: Vec<String>,
    /// Output names.
    #[prost(string, repeated, tag = "5")]
    pub output: Vec<String>,
    /// Attribute parameters without default values.
    #[prost(string, repeated, tag = "6")]
    pub attribute: Vec<String>,
    /// Attribute parameters with default values.
    #[prost(message, repeated, tag = "11")]
    pub attribute_proto: Vec<AttributeProto>,
    /// Body nodes.
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<NodeProto>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "8")]
    pub doc_string: Option<String>,
    /// Operator sets the body relies on.
    #[prost(message, repeated, tag = "9")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Domain the function belongs to.
    #[prost(string, optional, tag = "10")]
    pub domain: Option<String>,
    /// Overload identifier.
    #[prost(string, optional, tag = "13")]
    pub overload: Option<String>,
    /// Types and shapes of values in the body.
    #[prost(message, repeated, tag = "12")]
    pub value_info: Vec<ValueInfoProto>,
    /// Named metadata; keys should be distinct.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

// ---------------------------------------------------------------------------
// onnx-data.proto: non-tensor values (test data of sequence/map/optional I/O)
// ---------------------------------------------------------------------------

/// A serialized sequence value: elements all of kind `elem_type`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SequenceProto {
    /// Value name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Kind of the elements, a [`sequence_proto::DataType`] value.
    #[prost(int32, optional, tag = "2")]
    pub elem_type: Option<i32>,
    /// Elements when `elem_type` is `TENSOR`.
    #[prost(message, repeated, tag = "3")]
    pub tensor_values: Vec<TensorProto>,
    /// Elements when `elem_type` is `SPARSE_TENSOR`.
    #[prost(message, repeated, tag = "4")]
    pub sparse_tensor_values: Vec<SparseTensorProto>,
    /// Elements when `elem_type` is `SEQUENCE`.
    #[prost(message, repeated, tag = "5")]
    pub sequence_values: Vec<SequenceProto>,
    /// Elements when `elem_type` is `MAP`.
    #[prost(message, repeated, tag = "6")]
    pub map_values: Vec<MapProto>,
    /// Elements when `elem_type` is `OPTIONAL`.
    #[prost(message, repeated, tag = "7")]
    pub optional_values: Vec<OptionalProto>,
}

/// Nested types of [`SequenceProto`].
pub mod sequence_proto {
    /// Kind of the elements of a sequence (`SequenceProto.DataType`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set.
        Undefined = 0,
        /// Dense tensors.
        Tensor = 1,
        /// Sparse tensors.
        SparseTensor = 2,
        /// Sequences.
        Sequence = 3,
        /// Maps.
        Map = 4,
        /// Optionals.
        Optional = 5,
    }

    impl DataType {
        /// The name of this value in the schema, e.g. `"TENSOR"`.
        #[must_use]
        pub fn as_str_name(&self) -> &'static str {
            match self {
                Self::Undefined => "UNDEFINED",
                Self::Tensor => "TENSOR",
                Self::SparseTensor => "SPARSE_TENSOR",
                Self::Sequence => "SEQUENCE",
                Self::Map => "MAP",
                Self::Optional => "OPTIONAL",
            }
        }

        /// The value with schema name `value`, if any.
        #[must_use]
        pub fn from_str_name(value: &str) -> Option<Self> {
            match value {
                "UNDEFINED" => Some(Self::Undefined),
                "TENSOR" => Some(Self::Tensor),
                "SPARSE_TENSOR" => Some(Self::SparseTensor),
                "SEQUENCE" => Some(Self::Sequence),
                "MAP" => Some(Self::Map),
                "OPTIONAL" => Some(Self::Optional),
                _ => None,
            }
        }
    }
}

/// A serialized map value: keys (integral or string) and a sequence of values.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct MapProto {
    /// Value name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Key type, a [`tensor_proto::DataType`] value (integral or `STRING`).
    #[prost(int32, optional, tag = "2")]
    pub key_type: Option<i32>,
    /// Integral keys.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub keys: Vec<i64>,
    /// String keys, UTF-8 bytes.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub string_keys: Vec<Vec<u8>>,
    /// Values, in key order.
    #[prost(message, optional, tag = "5")]
    pub values: Option<SequenceProto>,
}

/// A serialized optional value: empty, or one value of kind `elem_type`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OptionalProto {
    /// Value name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Kind of the wrapped value, an [`optional_proto::DataType`] value.
    #[prost(int32, optional, tag = "2")]
    pub elem_type: Option<i32>,
    /// The value when `elem_type` is `TENSOR`.
    #[prost(message, optional, tag = "3")]
    pub tensor_value: Option<TensorProto>,
    /// The value when `elem_type` is `SPARSE_TENSOR`.
    #[prost(message, optional, tag = "4")]
    pub sparse_tensor_value: Option<SparseTensorProto>,
    /// The value when `elem_type` is `SEQUENCE`.
    #[prost(message, optional, tag = "5")]
    pub sequence_value: Option<SequenceProto>,
    /// The value when `elem_type` is `MAP`.
    #[prost(message, optional, tag = "6")]
    pub map_value: Option<MapProto>,
    /// The value when `elem_type` is `OPTIONAL`.
    #[prost(message, optional, boxed, tag = "7")]
    pub optional_value: Option<Box<OptionalProto>>,
}

/// Nested types of [`OptionalProto`].
pub mod optional_proto {
    /// Kind of the wrapped value of an optional (`OptionalProto.DataType`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        /// Not set.
        Undefined = 0,
        /// Dense tensor.
        Tensor = 1,
        /// Sparse tensor.
        SparseTensor = 2,
        /// Sequence.
        Sequence = 3,
        /// Map.
        Map = 4,
        /// Optional.
        Optional = 5,
    }

    impl DataType {
        /// The name of this value in the schema, e.g. `"TENSOR"`.
        #[must_use]
        pub fn as_str_name(&self) -> &'static str {
            match self {
                Self::Undefined => "UNDEFINED",
                Self::Tensor => "TENSOR",
                Self::SparseTensor => "SPARSE_TENSOR",
                Self::Sequence => "SEQUENCE",
                Self::Map => "MAP",
                Self::Optional => "OPTIONAL",
            }
        }

        /// The value with schema name `value`, if any.
        #[must_use]
        pub fn from_str_name(value: &str) -> Option<Self> {
            match value {
                "UNDEFINED" => Some(Self::Undefined),
                "TENSOR" => Some(Self::Tensor),
                "SPARSE_TENSOR" => Some(Self::SparseTensor),
                "SEQUENCE" => Some(Self::Sequence),
                "MAP" => Some(Self::Map),
                "OPTIONAL" => Some(Self::Optional),
                _ => None,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// onnx-operators.proto: operator-set descriptions
// ---------------------------------------------------------------------------

/// Description of one operator of an operator set.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OperatorProto {
    /// Operator name.
    #[prost(string, optional, tag = "1")]
    pub op_type: Option<String>,
    /// Operator-set version that introduced this definition.
    #[prost(int64, optional, tag = "2")]
    pub since_version: Option<i64>,
    /// Whether the operator is experimental or stable.
    #[prost(enumeration = "OperatorStatus", optional, tag = "3")]
    pub status: Option<i32>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
}

/// Description of an operator set: its identity, operators and functions.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OperatorSetProto {
    /// Must be `"ONNXOPSET"`.
    #[prost(string, optional, tag = "1")]
    pub magic: Option<String>,
    /// IR version this description uses.
    #[prost(int64, optional, tag = "2")]
    pub ir_version: Option<i64>,
    /// IR prerelease tag.
    #[prost(string, optional, tag = "3")]
    pub ir_version_prerelease: Option<String>,
    /// IR build metadata.
    #[prost(string, optional, tag = "7")]
    pub ir_build_metadata: Option<String>,
    /// Operator-set domain.
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// Operator-set version.
    #[prost(int64, optional, tag = "5")]
    pub opset_version: Option<i64>,
    /// Human-readable documentation (Markdown).
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// Operators of the set.
    #[prost(message, repeated, tag = "8")]
    pub operator: Vec<OperatorProto>,
    /// Functions of the set.
    #[prost(message, repeated, tag = "9")]
    pub functions: Vec<FunctionProto>,
}
