//! Names of calls for messages, and the checks of a program that need no execution.

use super::*;

/// The API name of an op, for messages.
pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Loop { .. } => "for",
        Op::If { .. } => "if",
        Op::SemSet { .. } => "noc_semaphore_set",
        Op::SemWait { .. } => "noc_semaphore_wait",
        Op::SemInc { .. } => "noc_semaphore_inc",
        Op::McastTiles { .. } => "noc_async_write_multicast",
        Op::McastSem { .. } => "noc_semaphore_set_multicast",
        Op::Reserve { .. } => "cb_reserve_back",
        Op::Push { .. } => "cb_push_back",
        Op::Wait { .. } => "cb_wait_front",
        Op::Pop { .. } => "cb_pop_front",
        Op::ReadTile { .. } => "noc_async_read_tile",
        Op::ReadBarrier => "noc_async_read_barrier",
        Op::WriteTile { .. } => "noc_async_write_tile",
        Op::WriteBarrier => "noc_async_write_barrier",
        Op::WritesFlushed => "noc_async_writes_flushed",
        Op::FillTile { .. } => "fill_tile",
        Op::PadTile { .. } => "pad_tile",
        Op::BcastTile { .. } => "bcast_tile",
        Op::Im2colTile { .. } => "sovc::im2col_tile",
        Op::GatherTile { .. } => "sovc::gather_tile",
        Op::EmbedTile { .. } => "sovc::embed_tile",
        Op::TapTile { .. } => "sovc::tap_tile",
        Op::ColumnTile { .. } => "sovc::column_tile",
        Op::SplitTile { .. } => "sovc::split_tile",
        Op::ConcatPartTile { .. } => "sovc::concat_part_tile",
        Op::Acquire => "tile_regs_acquire",
        Op::Commit => "tile_regs_commit",
        Op::WaitDst => "tile_regs_wait",
        Op::Release => "tile_regs_release",
        Op::CopyTile { .. } => "copy_tile",
        Op::Matmul { .. } => "matmul_tiles",
        Op::Binary { .. } => "binary (add/sub/mul_tiles)",
        Op::BinaryDst { .. } => "binary SFPU op",
        Op::Unary { .. } => "unary SFPU op",
        Op::CopyDst { .. } => "copy_dest_values",
        Op::Reduce { .. } => "reduce_tile",
        Op::Transpose { .. } => "transpose_wh_tile",
        Op::Pack { .. } => "pack_tile",
    }
}

/// Checks what can be checked before running: CBs in L1 and not overlapping, cores in the grid.
pub fn check_program(plan: &Plan, p: &Program) -> Result<(), String> {
    let d = &plan.device;
    let mut spans: Vec<(u64, u64, u8)> = Vec::new();
    for c in &p.cbs {
        if c.index >= 32 {
            return Err(format!("CB index {} (there are 32)", c.index));
        }
        if c.pages == 0 {
            return Err(format!("CB {} has no pages", c.index));
        }
        let end = c.address.saturating_add(c.bytes());
        if c.address < d.l1_unreserved_base || end > d.l1_bytes {
            return Err(format!(
                "CB {} at {:#x}..{:#x} lies outside the free L1 {:#x}..{:#x}",
                c.index, c.address, end, d.l1_unreserved_base, d.l1_bytes
            ));
        }
        if let Some(o) = spans.iter().find(|s| s.0 < end && c.address < s.1) {
            return Err(format!("CBs {} and {} overlap in L1", o.2, c.index));
        }
        if p.cbs.iter().filter(|x| x.index == c.index).count() > 1 {
            return Err(format!("CB {} is created twice", c.index));
        }
        spans.push((c.address, end, c.index));
    }
    for (i, c) in p.cores.iter().enumerate() {
        if c.x >= d.grid_x || c.y >= d.grid_y {
            return Err(format!("core ({},{}) is outside the {}x{} grid", c.x, c.y, d.grid_x, d.grid_y));
        }
        if p.cores[..i].iter().any(|o| o.x == c.x && o.y == c.y) {
            return Err(format!("core ({},{}) is given work twice", c.x, c.y));
        }
    }
    if p.semaphores.len() > 16 {
        return Err(format!("{} semaphores (at most 16 per program)", p.semaphores.len()));
    }
    for &(a, _) in &p.noc_args {
        if p.cores.iter().any(|c| c.args.get(a as usize).is_none()) {
            return Err(format!("runtime argument {a} holds a core coordinate but not every core has it"));
        }
    }
    // Core coordinates in kernel calls must be runtime arguments the host translates to NoC coordinates.
    fn coords(ops: &[Op], noc_args: &[(u8, Axis)]) -> Result<(), String> {
        for op in ops {
            let xy: Vec<(&Ix, Axis)> = match op {
                Op::SemInc { x, y, .. } => vec![(x, Axis::X), (y, Axis::Y)],
                Op::McastTiles { rect, .. } | Op::McastSem { rect, .. } => {
                    vec![(&rect.x0, Axis::X), (&rect.y0, Axis::Y), (&rect.x1, Axis::X), (&rect.y1, Axis::Y)]
                }
                Op::Loop { body, .. } => {
                    coords(body, noc_args)?;
                    continue;
                }
                Op::If { then, els, .. } => {
                    coords(then, noc_args)?;
                    coords(els, noc_args)?;
                    continue;
                }
                _ => continue,
            };
            for (ix, axis) in xy {
                if !matches!(ix, Ix::Arg(a) if noc_args.contains(&(*a, axis))) {
                    return Err(format!(
                        "{} names a core by {ix:?}, not by a runtime argument the host translates to a NoC {axis:?} coordinate",
                        op_name(op)
                    ));
                }
            }
        }
        Ok(())
    }
    for kernel in [&p.reader, &p.compute, &p.writer] {
        coords(kernel, &p.noc_args)?;
    }
    for &t in &p.tensors {
        if t as usize >= plan.tensors.len() {
            return Err(format!("names plan tensor {t}, which does not exist"));
        }
    }
    Ok(())
}
