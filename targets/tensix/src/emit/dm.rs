//! Data-movement calls without a TT-Metalium counterpart: the arguments of the `sovc_dm.h` helpers.

use super::*;

/// A movement map as the words `sovc::gather_tile` decodes: source rank and dims, the number of steps,
/// then per step its kind (0 reshape, 1 transpose, 2 slice), rank and dims, and its permutation or its
/// starts and steps.
pub(super) fn move_map_words(m: &MoveMap) -> Vec<u64> {
    let mut w = vec![m.src_dims.len() as u64];
    w.extend(&m.src_dims);
    w.push(m.steps.len() as u64);
    for st in &m.steps {
        let kind = match st {
            MoveStep::Reshape { .. } => 0,
            MoveStep::Transpose { .. } => 1,
            MoveStep::Slice { .. } => 2,
            MoveStep::Pad { .. } => 3,
        };
        w.push(kind);
        w.push(st.dims().len() as u64);
        w.extend(st.dims());
        match st {
            MoveStep::Reshape { .. } => {}
            MoveStep::Transpose { perm, .. } => w.extend(perm.iter().map(|&p| p as u64)),
            MoveStep::Pad { begins, .. } => w.extend(begins),
            MoveStep::Slice { starts, steps, .. } => {
                w.extend(starts);
                w.extend(steps);
            }
        }
    }
    w
}

pub(super) fn dm_format(f: DataFormat) -> &'static str {
    match f {
        DataFormat::Float32 => "sovc::Fmt::Float32",
        DataFormat::Float16_b => "sovc::Fmt::Float16_b",
        DataFormat::Bfp8_b => "sovc::Fmt::Bfp8_b",
        DataFormat::Bfp4_b => "sovc::Fmt::Bfp4_b",
    }
}

pub(super) fn dm_bcast(b: Bcast) -> &'static str {
    match b {
        Bcast::None => "sovc::Bcast::None",
        Bcast::Rows => "sovc::Bcast::Rows",
        Bcast::Cols => "sovc::Bcast::Cols",
        Bcast::Scalar => "sovc::Bcast::Scalar",
    }
}

impl Ctx<'_> {
    /// A call of a `sovc_dm.h` helper on a tile of format `f`.
    pub(super) fn helper_call(&self, op: &Op, f: DataFormat) -> String {
        match op {
            Op::FillTile { cb, slot, fill } => {
                let addr = self.slot_addr("get_write_ptr", *cb, slot);
                match fill {
                    Fill::Value(v) => format!("sovc::fill_tile<{}>({addr}, {});", dm_format(f), elem_bits(*v, f)),
                    Fill::Scaler(v) => format!("sovc::fill_scaler<{}>({addr}, {});", dm_format(f), elem_bits(*v, f)),
                    Fill::Cols { cols, inside, outside } => format!(
                        "sovc::fill_cols<{}>({addr}, {cols}, {}, {});",
                        dm_format(f),
                        elem_bits(*inside, f),
                        elem_bits(*outside, f)
                    ),
                }
            }
            Op::PadTile { cb, slot, rows, cols, value, front } => {
                let ptr = if *front { "get_read_ptr" } else { "get_write_ptr" };
                format!(
                    "sovc::pad_tile<{}>({}, {}, {}, {});",
                    dm_format(f),
                    self.slot_addr(ptr, *cb, slot),
                    ix(rows),
                    ix(cols),
                    elem_bits(*value, f)
                )
            }
            Op::BcastTile { cb, slot, bcast } => format!(
                "sovc::bcast_tile<{}, {}>({});",
                dm_format(f),
                dm_bcast(*bcast),
                self.slot_addr("get_write_ptr", *cb, slot)
            ),
            _ => unreachable!("only the L1 helper ops print through helper_call"),
        }
    }
}
