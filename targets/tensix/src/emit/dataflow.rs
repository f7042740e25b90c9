//! The reader and writer kernels: each data-movement [`Op`] as its TT-Metalium call (or a `sovc_dm.h`
//! helper), semaphores declared once at the top, multicast rectangles oriented for the kernel's NoC.

use super::*;

impl Ctx<'_> {
    pub(super) fn data_movement(&self, kind: Dm) -> String {
        let (ops, name) = match kind {
            Dm::Reader => (&self.p.reader, "reader"),
            Dm::Writer => (&self.p.writer, "writer"),
        };
        let mut body = String::new();
        let mut uses_helpers = false;
        for op in ops {
            self.dm_op(op, 0, name, &mut uses_helpers, &mut body);
        }

        let mut out = String::new();
        self.banner(name, &mut out);
        let used = tensors_used(ops);
        let list: Vec<String> = used
            .iter()
            .map(|&j| match self.p.tensors.get(j as usize) {
                Some(t) => format!("t{j} (plan tensor {t})"),
                None => format!("t{j} (missing)"),
            })
            .collect();
        let _ = writeln!(
            out,
            "// Compile-time args: one TensorAccessorArgs block per tensor used, in this order: {}.",
            if list.is_empty() { "none".to_string() } else { list.join(", ") }
        );
        out.push_str("\n#include <cstdint>\n\n#include \"api/dataflow/dataflow_api.h\"\n");
        if uses_helpers {
            out.push_str("#include \"../sovc_dm.h\"\n");
        }
        out.push_str("\nvoid kernel_main() {\n");
        self.cb_decls(&cbs_used(ops), &mut out);
        for sem in sems_used(ops) {
            line(&mut out, 0, &format!("const uint32_t sem_{sem}_addr = get_semaphore({sem});"));
            line(
                &mut out,
                0,
                &format!("volatile tt_l1_ptr uint32_t* sem_{sem} = reinterpret_cast<volatile tt_l1_ptr uint32_t*>(sem_{sem}_addr);"),
            );
        }
        let mut prev: Option<u8> = None;
        for &j in &used {
            let offset = match prev {
                None => "0".to_string(),
                Some(k) => format!("t{k}_args.next_compile_time_args_offset()"),
            };
            line(&mut out, 0, &format!("constexpr auto t{j}_args = TensorAccessorArgs<{offset}>();"));
            let page = self.p.tensors.get(j as usize).and_then(|&t| self.plan.tensors.get(t as usize));
            match page {
                Some(t) => line(
                    &mut out,
                    0,
                    &format!(
                        "const auto t{j} = TensorAccessor(t{j}_args, get_arg_val<uint32_t>({}), {});",
                        self.n_args + j as usize,
                        t.page_bytes()
                    ),
                ),
                None => line(&mut out, 0, &format!("#error \"sovc: program tensor {j} is not a tensor of the plan\"")),
            }
            prev = Some(j);
        }
        out.push_str(&body);
        out.push_str("}\n");
        out
    }

    fn dm_op(&self, op: &Op, depth: usize, kernel: &str, helpers: &mut bool, out: &mut String) {
        let text = match op {
            Op::Loop { var, count, body } => {
                line(out, depth, &format!("for (uint32_t v{var} = 0; v{var} < {}; ++v{var}) {{", ix(count)));
                for b in body {
                    self.dm_op(b, depth + 1, kernel, helpers, out);
                }
                line(out, depth, "}");
                return;
            }
            Op::If { cond, then, els } => {
                line(out, depth, &format!("if ({} != 0) {{", ix(cond)));
                for b in then {
                    self.dm_op(b, depth + 1, kernel, helpers, out);
                }
                if !els.is_empty() {
                    line(out, depth, "} else {");
                    for b in els {
                        self.dm_op(b, depth + 1, kernel, helpers, out);
                    }
                }
                line(out, depth, "}");
                return;
            }
            Op::Reserve { cb, n } => format!("cb_reserve_back(cb_{cb}, {n});"),
            Op::Push { cb, n } => format!("cb_push_back(cb_{cb}, {n});"),
            Op::Wait { cb, n } => format!("cb_wait_front(cb_{cb}, {n});"),
            Op::Pop { cb, n } => format!("cb_pop_front(cb_{cb}, {n});"),
            Op::SemSet { sem, value } => format!("noc_semaphore_set(sem_{sem}, {value});"),
            Op::SemWait { sem, value } => format!("noc_semaphore_wait(sem_{sem}, {value});"),
            Op::SemInc { sem, x, y } => {
                format!("noc_semaphore_inc(get_noc_addr({}, {}, sem_{sem}_addr), 1);", ix(x), ix(y))
            }
            Op::McastTiles { cb, n, rect, dests } => format!(
                "noc_async_write_multicast(get_write_ptr(cb_{cb}), {}, {n} * {}, {dests});",
                mcast_addr(rect, &format!("get_write_ptr(cb_{cb})"), kernel),
                self.page(*cb)
            ),
            Op::McastSem { sem, rect, dests } => format!(
                "noc_semaphore_set_multicast(sem_{sem}_addr, {}, {dests});",
                mcast_addr(rect, &format!("sem_{sem}_addr"), kernel)
            ),
            Op::ReadTile { tensor, tile, cb, slot } => {
                format!("noc_async_read_tile({}, t{tensor}, {});", ix(tile), self.slot_addr("get_write_ptr", *cb, slot))
            }
            Op::WriteTile { tensor, tile, cb, slot } => {
                format!("noc_async_write_tile({}, t{tensor}, {});", ix(tile), self.slot_addr("get_read_ptr", *cb, slot))
            }
            Op::ReadBarrier => "noc_async_read_barrier();".to_string(),
            Op::WriteBarrier => "noc_async_write_barrier();".to_string(),
            Op::WritesFlushed => "noc_async_writes_flushed();".to_string(),
            Op::Im2colTile { tensor, scratch, image, kt, nt, geom, cb, slot } => {
                *helpers = true;
                let t = self.p.tensors.get(*tensor as usize).and_then(|&t| self.plan.tensors.get(t as usize));
                match (self.cb_format(*cb), t) {
                    (Some(f), Some(t)) => format!(
                        "sovc::im2col_tile<{}>(t{tensor}, {}, {}, get_write_ptr(cb_{scratch}), {}, {}, {}, {}, sovc::ConvGeom{{{}}});",
                        dm_format(f),
                        t.rows,
                        t.cols,
                        self.slot_addr("get_write_ptr", *cb, slot),
                        ix(image),
                        ix(kt),
                        ix(nt),
                        [geom.c, geom.h, geom.w, geom.kh, geom.kw, geom.sh, geom.sw, geom.ph, geom.pw, geom.dh, geom.dw, geom.oh, geom.ow]
                            .map(|v| v.to_string())
                            .join(", ")
                    ),
                    _ => format!("#error \"sovc: im2col on CB {cb} or tensor {tensor}, which the program does not declare\""),
                }
            }
            Op::TapTile { tensor, scratch, image, ct, nt, tap, geom, pad, cb, slot } => {
                *helpers = true;
                let t = self.p.tensors.get(*tensor as usize).and_then(|&t| self.plan.tensors.get(t as usize));
                match (self.cb_format(*cb), t) {
                    (Some(f), Some(t)) => format!(
                        "sovc::tap_tile<{}>(t{tensor}, {}, {}, get_write_ptr(cb_{scratch}), {}, {}, {}, {}, {tap}, {}, sovc::ConvGeom{{{}}});",
                        dm_format(f),
                        t.rows,
                        t.cols,
                        self.slot_addr("get_write_ptr", *cb, slot),
                        ix(image),
                        ix(ct),
                        ix(nt),
                        elem_bits(*pad, f),
                        [geom.c, geom.h, geom.w, geom.kh, geom.kw, geom.sh, geom.sw, geom.ph, geom.pw, geom.dh, geom.dw, geom.oh, geom.ow]
                            .map(|v| v.to_string())
                            .join(", ")
                    ),
                    _ => format!("#error \"sovc: tap tile on CB {cb} or tensor {tensor}, which the program does not declare\""),
                }
            }
            Op::ConcatPartTile { tensor, scratch, tile, rows, cols, dims, axis, start, size, cb, slot } => {
                *helpers = true;
                let t = self.p.tensors.get(*tensor as usize).and_then(|&t| self.plan.tensors.get(t as usize));
                let a = *axis as usize;
                match (self.cb_format(*cb), t, dims.get(a)) {
                    (Some(f), Some(t), Some(&n)) => {
                        // Elements of the result split as (outer, axis, inner).
                        let inner: u64 = dims[a + 1..].iter().product();
                        let outer: u64 = dims[..a].iter().product();
                        format!(
                            "sovc::concat_part_tile<{}>(t{tensor}, {}, {}, get_write_ptr(cb_{scratch}), {}, {}, {rows}, {cols}, {outer}, {n}, {inner}, {start}, {size});",
                            dm_format(f),
                            t.rows,
                            t.cols,
                            self.slot_addr("get_write_ptr", *cb, slot),
                            ix(tile)
                        )
                    }
                    _ => format!("#error \"sovc: concatenation on CB {cb} or tensor {tensor}, which the program does not declare\""),
                }
            }
            Op::SplitTile { from, hi, lo, slot } => {
                *helpers = true;
                format!(
                    "sovc::split_tile(get_write_ptr(cb_{from}), {}, {});",
                    self.slot_addr("get_write_ptr", *hi, slot),
                    self.slot_addr("get_write_ptr", *lo, slot)
                )
            }
            Op::ColumnTile { from, col, cb, slot } => {
                *helpers = true;
                match self.cb_format(*cb) {
                    Some(f) => format!(
                        "sovc::column_tile<{}>(get_write_ptr(cb_{from}), {col}, {});",
                        dm_format(f),
                        self.slot_addr("get_write_ptr", *cb, slot)
                    ),
                    None => format!("#error \"sovc: column tile on CB {cb}, which the program does not declare\""),
                }
            }
            Op::EmbedTile { table, ids, scratch, ids_scratch, tile, rows, cols, vocab, width, cb, slot } => {
                *helpers = true;
                let t = |j: u8| self.p.tensors.get(j as usize).and_then(|&t| self.plan.tensors.get(t as usize));
                match (self.cb_format(*cb), t(*table), t(*ids)) {
                    (Some(f), Some(tt), Some(it)) => format!(
                        "sovc::embed_tile<{}>(t{table}, {}, {}, get_write_ptr(cb_{scratch}), t{ids}, {}, {}, get_write_ptr(cb_{ids_scratch}), {}, {}, {rows}, {cols}, {vocab}, {width});",
                        dm_format(f),
                        tt.rows,
                        tt.cols,
                        it.rows,
                        it.cols,
                        self.slot_addr("get_write_ptr", *cb, slot),
                        ix(tile)
                    ),
                    _ => format!("#error \"sovc: embedding on CB {cb} or tensors {table}, {ids}, which the program does not declare\""),
                }
            }
            Op::GatherTile { tensor, scratch, tile, rows, cols, map, cb, slot } => {
                *helpers = true;
                let t = self.p.tensors.get(*tensor as usize).and_then(|&t| self.plan.tensors.get(t as usize));
                match (self.cb_format(*cb), t) {
                    (Some(f), Some(t)) => {
                        let words: Vec<String> = move_map_words(map).iter().map(|w| w.to_string()).collect();
                        format!(
                            "{{ static constexpr uint32_t map[] = {{{}}}; sovc::gather_tile<{}>(t{tensor}, {}, {}, get_write_ptr(cb_{scratch}), {}, {}, {rows}, {cols}, map); }}",
                            words.join(", "),
                            dm_format(f),
                            t.rows,
                            t.cols,
                            self.slot_addr("get_write_ptr", *cb, slot),
                            ix(tile)
                        )
                    }
                    _ => format!(
                        "#error \"sovc: gather on CB {cb} or tensor {tensor}, which the program does not declare\""
                    ),
                }
            }
            Op::FillTile { cb, .. } | Op::PadTile { cb, .. } | Op::BcastTile { cb, .. } => {
                *helpers = true;
                match self.cb_format(*cb) {
                    Some(f) => self.helper_call(op, f),
                    None => format!("#error \"sovc: {} on CB {cb}, which the program does not declare\"", op_name(op)),
                }
            }
            other => {
                format!("#error \"sovc: {} is a compute op; a {kernel} kernel cannot run it\"", op_name(other))
            }
        };
        line(out, depth, &text);
    }
}

/// The NoC multicast address of `addr` on the cores of `r`. The reader issues on NoC 0, where a
/// rectangle runs from its top-left to its bottom-right corner; the writer on NoC 1, which runs the
/// other way, so its start is the bottom-right corner.
fn mcast_addr(r: &Rect, addr: &str, kernel: &str) -> String {
    let (s, e) = if kernel == "writer" { ((&r.x1, &r.y1), (&r.x0, &r.y0)) } else { ((&r.x0, &r.y0), (&r.x1, &r.y1)) };
    format!("get_noc_multicast_addr({}, {}, {}, {}, {addr})", ix(s.0), ix(s.1), ix(e.0), ix(e.1))
}

/// The semaphores `ops` use, in increasing order.
fn sems_used(ops: &[Op]) -> BTreeSet<u8> {
    let mut all = Vec::new();
    flatten(ops, &mut all);
    all.iter()
        .filter_map(|op| match op {
            Op::SemSet { sem, .. } | Op::SemWait { sem, .. } | Op::SemInc { sem, .. } | Op::McastSem { sem, .. } => {
                Some(*sem)
            }
            _ => None,
        })
        .collect()
}
