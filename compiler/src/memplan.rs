//! Static memory planning: every intermediate value gets an offset in one activation arena, and values
//! whose lifetimes do not overlap share memory. Greedy by size (largest first, then earliest), each placed
//! at the lowest offset that does not collide with a placed buffer alive at the same time. Deterministic.
//! Today it plans graph values; with the kernel IR it will plan kernel buffers the same way.

use sovc_ir::Graph;

/// A buffer to place: its size and the steps (inclusive) during which it is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub size: u64,
    pub first: usize,
    pub last: usize,
}

/// Offsets for each buffer, the arena size, and what no reuse would need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub offsets: Vec<u64>,
    pub arena_bytes: u64,
    pub naive_bytes: u64,
}

/// Alignment of every buffer in the arena.
pub const ALIGN: u64 = 64;

fn align(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// Places `buffers` in one arena.
pub fn plan(buffers: &[Buffer]) -> Plan {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].size), buffers[i].first, i));
    let mut offsets = vec![0u64; buffers.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut arena = 0u64;
    for i in order {
        let b = buffers[i];
        // Address ranges of placed buffers alive at the same time, sorted by offset.
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&j| buffers[j].first <= b.last && b.first <= buffers[j].last)
            .map(|&j| (offsets[j], offsets[j] + align(buffers[j].size)))
            .collect();
        busy.sort();
        let mut off = 0u64;
        for (s, e) in busy {
            if off + align(b.size) <= s {
                break;
            }
            off = off.max(e);
        }
        offsets[i] = off;
        arena = arena.max(off + align(b.size));
        placed.push(i);
    }
    Plan { offsets, arena_bytes: arena, naive_bytes: buffers.iter().map(|b| align(b.size)).sum() }
}

/// The plan of a graph's intermediate values (node results that are not graph outputs), with each value's
/// buffer index; values of unbounded symbolic size are sized at 128 per unbounded dimension.
pub fn plan_graph(g: &Graph) -> (Plan, Vec<Option<usize>>) {
    let last = g.last_uses();
    let outputs: std::collections::HashSet<_> = g.outputs.iter().map(|o| o.value).collect();
    let mut buffers = Vec::new();
    let mut index = vec![None; g.values.len()];
    for (n, node) in g.nodes.iter().enumerate() {
        for &v in &node.outputs {
            if outputs.contains(&v) {
                continue;
            }
            let t = g.ty(v);
            let elems: u64 = t.shape.0.iter().map(|d| d.upper_bound().unwrap_or(128)).product();
            let end = match last[v.index()] {
                Some(usize::MAX) | None => n,
                Some(l) => l,
            };
            index[v.index()] = Some(buffers.len());
            buffers.push(Buffer { size: elems * t.dtype.size() as u64, first: n, last: end });
        }
    }
    (plan(&buffers), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(buffers: &[Buffer], p: &Plan) {
        for (i, a) in buffers.iter().enumerate() {
            for (j, b) in buffers.iter().enumerate().skip(i + 1) {
                let live_together = a.first <= b.last && b.first <= a.last;
                let (ao, bo) = (p.offsets[i], p.offsets[j]);
                let apart = ao + a.size <= bo || bo + b.size <= ao;
                assert!(!live_together || apart || a.size == 0 || b.size == 0, "buffers {i} and {j} collide");
            }
            assert!(p.offsets[i].is_multiple_of(ALIGN) && p.offsets[i] + a.size <= p.arena_bytes);
        }
        assert!(p.arena_bytes <= p.naive_bytes);
    }

    #[test]
    fn a_chain_reuses_memory() {
        // x1 -> x2 -> x3 -> x4: only two live at a time.
        let b: Vec<Buffer> = (0..4).map(|i| Buffer { size: 1000, first: i, last: i + 1 }).collect();
        let p = plan(&b);
        check(&b, &p);
        assert_eq!(p.arena_bytes, 2 * 1024);
        assert_eq!(p.naive_bytes, 4 * 1024);
    }

    #[test]
    fn random_lifetimes_never_collide() {
        let mut s = 12345u64;
        let mut next = |m: u64| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) % m
        };
        for _ in 0..200 {
            let n = 1 + next(40) as usize;
            let b: Vec<Buffer> = (0..n)
                .map(|_| {
                    let first = next(30) as usize;
                    Buffer { size: next(5000), first, last: first + next(10) as usize }
                })
                .collect();
            let p = plan(&b);
            check(&b, &p);
            // Never below the most bytes alive at one step.
            let peak = (0..45)
                .map(|t| b.iter().filter(|x| x.first <= t && t <= x.last).map(|x| align(x.size)).sum::<u64>())
                .max()
                .unwrap_or(0);
            assert!(p.arena_bytes >= peak);
        }
    }
}
