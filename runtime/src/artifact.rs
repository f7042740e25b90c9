//! The `.sovc` artifact: one file that carries a compiled model. The runtime owns this schema; the
//! compiler writes it through [`ArtifactBuilder`].
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! 0   magic "SOVCART\0"            8 bytes
//! 8   format version (u32)         currently 1
//! 12  section count (u32)
//! 16  root hash (32 bytes)         SHA-256 of the version, the count and every table entry
//! 48  section table                per section: kind (u32), name length (u32), offset (u64), size (u64),
//!                                  SHA-256 of the contents (32 bytes), name (UTF-8)
//!     sections                     each starting at a multiple of 64 bytes (weights can be mmapped and
//!                                  used in place), zero padding between
//! ```
//!
//! Sections: `manifest` (JSON: producer, targets, inputs, outputs, the weight index, the planned
//! activation memory), `plan` (JSON: the fused kernels with their nodes, rules, FLOPs, bytes and IR
//! hashes, which `sovc audit` reads), `weights` (each
//! tensor 64-byte aligned), `graph` (the optimized graph in `.sov` text, which the reference device runs
//! and every target's code was lowered from), and later `code/<target>` and `plan/<target>`.
//! Everything is written in a fixed order with no timestamps, so the same input gives the same bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"SOVCART\0";
pub const VERSION: u32 = 1;
pub const ALIGN: usize = 64;
const HEADER: usize = 48;
const ENTRY_FIXED: usize = 4 + 4 + 8 + 8 + 32;

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SectionKind {
    Manifest = 1,
    Weights = 2,
    Graph = 3,
    Code = 4,
    Plan = 5,
}

impl SectionKind {
    fn from_u32(v: u32) -> Option<SectionKind> {
        Some(match v {
            1 => SectionKind::Manifest,
            2 => SectionKind::Weights,
            3 => SectionKind::Graph,
            4 => SectionKind::Code,
            5 => SectionKind::Plan,
            _ => return None,
        })
    }
}

/// One tensor of the weights section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightEntry {
    /// The key the graph's constants use (`file` is always `weights` inside an artifact).
    pub key: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Byte offset inside the weights section (a multiple of 64) and length.
    pub offset: u64,
    pub size: u64,
}

/// A graph input or output as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoEntry {
    pub name: String,
    /// The type in the IR's text form, e.g. `f32[batch<=8,128]`.
    pub ty: String,
}

/// The manifest section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub producer: String,
    /// Targets this artifact carries code for (`null` carries none).
    pub targets: Vec<String>,
    pub inputs: Vec<IoEntry>,
    pub outputs: Vec<IoEntry>,
    pub weights: Vec<WeightEntry>,
    /// Bytes of the activation arena the compiler planned (intermediates share memory by lifetime).
    pub activation_bytes: u64,
}

/// One node of a kernel in the `plan` section: its index in the graph section, its op, the source node
/// name, and the optimizer rules that produced it (oldest first; empty when it comes from the model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: usize,
    pub op: String,
    pub name: String,
    pub rules: Vec<String>,
}

/// One fused kernel group of the `plan` section, with what it costs and what it touches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    pub id: usize,
    /// The op that shapes the kernel (matmul, conv, attention, ...).
    pub anchor: String,
    pub nodes: Vec<NodeRecord>,
    /// Values read and written, as `%N` of the graph section, with their types.
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    pub flops: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// SHA-256 of the kernel's nodes in the IR text form: what its code is generated from.
    pub ir_sha256: String,
    /// How the target runs it: `loop`, `gemm`, `gemm+epilogue`, `attention`, ... or `reference: WHY`
    /// when no kernel of the target covers it yet (empty for `null`).
    #[serde(default)]
    pub lowering: String,
    /// Generated machine code for it, in bytes, and the SHA-256 of that code.
    #[serde(default)]
    pub code_bytes: u64,
    #[serde(default)]
    pub code_sha256: String,
}

/// The `plan` section: the kernels in execution order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub kernels: Vec<KernelRecord>,
}

/// A section as read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub kind: SectionKind,
    pub name: String,
    pub offset: u64,
    pub data: Vec<u8>,
    pub sha256: [u8; 32],
}

/// A verified artifact.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub version: u32,
    pub root_hash: [u8; 32],
    pub sections: Vec<Section>,
    pub manifest: Manifest,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArtifactError {
    #[error("not a sovc artifact (bad magic)")]
    BadMagic,
    #[error("artifact format version {found} is not supported (this runtime reads version {VERSION})")]
    Version { found: u32 },
    #[error("artifact is truncated: {0}")]
    Truncated(String),
    #[error("artifact is corrupted: section `{section}` does not match its SHA-256")]
    SectionHash { section: String },
    #[error("artifact is corrupted: the root hash does not match the section table")]
    RootHash,
    #[error("artifact is malformed: {0}")]
    Malformed(String),
    #[error("artifact has no code for target `{target}` (it carries: {available})")]
    WrongTarget { target: String, available: String },
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Lower-case hex of a hash.
pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

fn table_bytes(entries: &[(SectionKind, &str, u64, u64, [u8; 32])]) -> Vec<u8> {
    let mut t = Vec::new();
    for (kind, name, off, size, h) in entries {
        t.extend_from_slice(&(*kind as u32).to_le_bytes());
        t.extend_from_slice(&(name.len() as u32).to_le_bytes());
        t.extend_from_slice(&off.to_le_bytes());
        t.extend_from_slice(&size.to_le_bytes());
        t.extend_from_slice(h);
        t.extend_from_slice(name.as_bytes());
    }
    t
}

fn root_hash(version: u32, count: u32, table: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(version.to_le_bytes());
    h.update(count.to_le_bytes());
    h.update(table);
    h.finalize().into()
}

/// Assembles an artifact. Sections are written in the order they are added.
#[derive(Default)]
pub struct ArtifactBuilder {
    sections: Vec<(SectionKind, String, Vec<u8>)>,
}

impl ArtifactBuilder {
    pub fn new() -> ArtifactBuilder {
        ArtifactBuilder::default()
    }

    pub fn section(&mut self, kind: SectionKind, name: impl Into<String>, data: Vec<u8>) -> &mut Self {
        self.sections.push((kind, name.into(), data));
        self
    }

    /// The file's bytes.
    pub fn build(&self) -> Vec<u8> {
        let names_len: usize = self.sections.iter().map(|s| s.1.len()).sum();
        let table_len = self.sections.len() * ENTRY_FIXED + names_len;
        let mut off = align(HEADER + table_len);
        let mut entries = Vec::new();
        for (kind, name, data) in &self.sections {
            entries.push((*kind, name.as_str(), off as u64, data.len() as u64, sha(data)));
            off = align(off + data.len());
        }
        let table = table_bytes(&entries);
        let count = self.sections.len() as u32;
        let mut out = Vec::with_capacity(off);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&root_hash(VERSION, count, &table));
        out.extend_from_slice(&table);
        for ((_, _, data), (_, _, o, _, _)) in self.sections.iter().zip(&entries) {
            out.resize(*o as usize, 0);
            out.extend_from_slice(data);
        }
        out.resize(align(out.len()), 0);
        out
    }
}

fn read_u32(b: &[u8], at: usize) -> Result<u32, ArtifactError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| ArtifactError::Truncated(format!("header field at byte {at}")))
}

fn read_u64(b: &[u8], at: usize) -> Result<u64, ArtifactError> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| ArtifactError::Truncated(format!("header field at byte {at}")))
}

impl Artifact {
    /// Parses and verifies an artifact: magic, version, bounds, every section hash and the root hash.
    pub fn from_bytes(b: &[u8]) -> Result<Artifact, ArtifactError> {
        if b.len() < 8 || &b[..8] != MAGIC {
            return Err(if b.len() < 8 && MAGIC.starts_with(b) {
                ArtifactError::Truncated("no header".into())
            } else {
                ArtifactError::BadMagic
            });
        }
        let version = read_u32(b, 8)?;
        if version != VERSION {
            return Err(ArtifactError::Version { found: version });
        }
        let count = read_u32(b, 12)?;
        let root: [u8; 32] =
            b.get(16..48).ok_or_else(|| ArtifactError::Truncated("no root hash".into()))?.try_into().expect("32 bytes");
        if count as usize > b.len() / ENTRY_FIXED {
            return Err(ArtifactError::Malformed(format!("{count} sections cannot fit in {} bytes", b.len())));
        }
        let mut at = HEADER;
        let mut sections = Vec::with_capacity(count as usize);
        for i in 0..count {
            let kind_raw = read_u32(b, at)?;
            let name_len = read_u32(b, at + 4)? as usize;
            let off = read_u64(b, at + 8)?;
            let size = read_u64(b, at + 16)?;
            let h: [u8; 32] = b
                .get(at + 24..at + 56)
                .ok_or_else(|| ArtifactError::Truncated(format!("section table entry {i}")))?
                .try_into()
                .expect("32 bytes");
            let name_bytes = b
                .get(at + 56..at + 56 + name_len)
                .ok_or_else(|| ArtifactError::Truncated(format!("name of section {i}")))?;
            let name = std::str::from_utf8(name_bytes)
                .map_err(|_| ArtifactError::Malformed(format!("section {i} name is not UTF-8")))?
                .to_string();
            let kind = SectionKind::from_u32(kind_raw)
                .ok_or_else(|| ArtifactError::Malformed(format!("section `{name}` has unknown kind {kind_raw}")))?;
            at += 56 + name_len;
            let end = off
                .checked_add(size)
                .ok_or_else(|| ArtifactError::Malformed(format!("section `{name}` range overflows")))?;
            if end > b.len() as u64 {
                return Err(ArtifactError::Truncated(format!(
                    "section `{name}` ends at byte {end}, the file has {}",
                    b.len()
                )));
            }
            if off % ALIGN as u64 != 0 {
                return Err(ArtifactError::Malformed(format!("section `{name}` is not {ALIGN}-byte aligned")));
            }
            let data = b[off as usize..end as usize].to_vec();
            if sha(&data) != h {
                return Err(ArtifactError::SectionHash { section: name });
            }
            sections.push(Section { kind, name, offset: off, data, sha256: h });
        }
        let table = &b[HEADER..at];
        // Sections follow the table in order without overlapping, every byte between them is zero padding,
        // and no (kind, name) appears twice: nothing in the file escapes the hashes.
        let mut cursor = at;
        let mut seen = std::collections::BTreeSet::new();
        for s in &sections {
            let off = s.offset as usize;
            if off < cursor {
                return Err(ArtifactError::Malformed(format!(
                    "section `{}` overlaps the table or the section before it",
                    s.name
                )));
            }
            if b[cursor..off].iter().any(|&x| x != 0) {
                return Err(ArtifactError::Malformed(format!(
                    "non-zero bytes in the padding before section `{}`",
                    s.name
                )));
            }
            if !seen.insert((s.kind, s.name.clone())) {
                return Err(ArtifactError::Malformed(format!("section `{}` appears twice", s.name)));
            }
            cursor = off + s.data.len();
        }
        if b.get(cursor..).is_some_and(|tail| tail.iter().any(|&x| x != 0)) {
            return Err(ArtifactError::Malformed("non-zero bytes after the last section".into()));
        }
        // The file ends exactly at the aligned end of its last section: nothing cut, nothing appended.
        let end = sections.iter().map(|s| s.offset as usize + s.data.len()).max().unwrap_or(at);
        if b.len() != align(end.max(at)) {
            return Err(ArtifactError::Truncated(format!(
                "the file has {} bytes, its section table describes {}",
                b.len(),
                align(end.max(at))
            )));
        }
        if root_hash(version, count, table) != root {
            return Err(ArtifactError::RootHash);
        }
        let m = sections
            .iter()
            .find(|s| s.kind == SectionKind::Manifest)
            .ok_or_else(|| ArtifactError::Malformed("no manifest section".into()))?;
        let manifest: Manifest =
            serde_json::from_slice(&m.data).map_err(|e| ArtifactError::Malformed(format!("manifest: {e}")))?;
        Ok(Artifact { version, root_hash: root, sections, manifest })
    }

    /// Reads and verifies an artifact file.
    pub fn load(path: &std::path::Path) -> Result<Artifact, crate::RuntimeError> {
        let b = std::fs::read(path)
            .map_err(|e| crate::RuntimeError::Io { path: path.display().to_string(), msg: e.to_string() })?;
        Artifact::from_bytes(&b)
            .map_err(|e| crate::RuntimeError::Artifact { path: path.display().to_string(), source: e })
    }

    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// The kernel plan, if the artifact has one.
    pub fn plan(&self) -> Result<Option<PlanRecord>, ArtifactError> {
        match self.section(SectionKind::Plan) {
            None => Ok(None),
            Some(s) => {
                serde_json::from_slice(&s.data).map(Some).map_err(|e| ArtifactError::Malformed(format!("plan: {e}")))
            }
        }
    }

    /// The `cuda.plan` section of a `cuda` artifact.
    pub fn cuda_plan(&self) -> Result<Option<crate::cuda::CudaPlan>, ArtifactError> {
        match self.sections.iter().find(|s| s.kind == SectionKind::Code && s.name == "cuda.plan") {
            None => Ok(None),
            Some(s) => serde_json::from_slice(&s.data)
                .map(Some)
                .map_err(|e| ArtifactError::Malformed(format!("cuda.plan: {e}"))),
        }
    }

    /// The `metal.plan` section of a `metal` artifact, with its SPIR-V words (`metal.spv`).
    pub fn metal_plan(&self) -> Result<Option<(crate::metal::MetalPlan, Vec<u32>)>, ArtifactError> {
        let named = |n: &str| self.sections.iter().find(|s| s.kind == SectionKind::Code && s.name == n);
        match named("metal.plan") {
            None => Ok(None),
            Some(s) => {
                let plan = serde_json::from_slice(&s.data)
                    .map_err(|e| ArtifactError::Malformed(format!("metal.plan: {e}")))?;
                let spv = named("metal.spv")
                    .ok_or_else(|| ArtifactError::Malformed("a metal.plan without its metal.spv".into()))?;
                if spv.data.len() % 4 != 0 {
                    return Err(ArtifactError::Malformed("metal.spv is not whole 32-bit words".into()));
                }
                let words = spv.data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                Ok(Some((plan, words)))
            }
        }
    }

    /// The `rvv.plan` section of a `riscv64-rvv` artifact, with its code (`rvv.code`).
    pub fn rvv_plan(&self) -> Result<Option<(crate::rvv::RvvPlan, Vec<u8>)>, ArtifactError> {
        let named = |n: &str| self.sections.iter().find(|s| s.kind == SectionKind::Code && s.name == n);
        match named("rvv.plan") {
            None => Ok(None),
            Some(s) => {
                let plan =
                    serde_json::from_slice(&s.data).map_err(|e| ArtifactError::Malformed(format!("rvv.plan: {e}")))?;
                let code = named("rvv.code")
                    .ok_or_else(|| ArtifactError::Malformed("an rvv.plan without its rvv.code".into()))?;
                Ok(Some((plan, code.data.clone())))
            }
        }
    }

    /// Checks that the artifact carries code for `target`.
    pub fn require_target(&self, target: &str) -> Result<(), ArtifactError> {
        if self.manifest.targets.iter().any(|t| t == target) {
            return Ok(());
        }
        let available = if self.manifest.targets.is_empty() {
            "no target code".to_string()
        } else {
            self.manifest.targets.join(", ")
        };
        Err(ArtifactError::WrongTarget { target: target.into(), available })
    }
}
