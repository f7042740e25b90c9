//! Guard elimination by loop splitting: a loop whose body reads through padding guards (pooling,
//! depthwise convolution) is cut into up to three loops along each variable the guards test: the border
//! ranges keep their guards, the interior range has them removed, so it runs without branches and,
//! when its accesses are unit-stride, four lanes at a time. Conditions are proven for every value of the
//! other variables in scope (loop and reduction ranges), so removing them cannot change a result.

use super::*;

type Ranges = BTreeMap<Var, u64>;

/// Splits every `for` loop of `k` (innermost first) around its guards.
pub(super) fn split_guards(k: &mut Kernel) {
    let mut ranges = Ranges::new();
    ranges.insert(0, k.extent);
    split_stmts(&mut k.body, &mut ranges);
}

fn split_stmts(body: &mut Vec<Stmt>, ranges: &mut Ranges) {
    let mut out = Vec::new();
    for s in body.drain(..) {
        match s {
            Stmt::For { var, extent, mut body } => {
                ranges.insert(var, extent);
                split_stmts(&mut body, ranges);
                out.extend(split_loop(var, extent, body, ranges));
                ranges.remove(&var);
            }
            other => out.push(other),
        }
    }
    *body = out;
}

fn floor_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    -floor_div(-a, b)
}

/// Narrows `[lo, hi]` (inclusive) to the values of `v` for which `0 <= ix < bound` holds whatever the
/// other variables are (within `ranges`).
fn narrow(ix: &Index, bound: u64, v: Var, ranges: &Ranges, lo: &mut i128, hi: &mut i128) -> bool {
    let c = ix.coeff(v) as i128;
    let (mut omin, mut omax) = (ix.offset as i128, ix.offset as i128);
    for &(u, k) in &ix.terms {
        if u == v {
            continue;
        }
        let Some(&e) = ranges.get(&u) else { return false };
        let span = k as i128 * (e as i128 - 1).max(0);
        if span < 0 {
            omin += span;
        } else {
            omax += span;
        }
    }
    let b = bound as i128;
    if c > 0 {
        *lo = (*lo).max(ceil_div(-omin, c));
        *hi = (*hi).min(floor_div(b - 1 - omax, c));
    } else {
        let c = -c;
        *hi = (*hi).min(floor_div(omin, c));
        *lo = (*lo).max(ceil_div(omax - b + 1, c));
    }
    true
}

/// The interior of `v` (inclusive bounds) over every guard condition that tests `v`, or `None` when no
/// condition tests it (or one cannot be bounded).
fn interior(body: &[Stmt], v: Var, extent: u64, ranges: &Ranges) -> Option<(i128, i128)> {
    let (mut lo, mut hi) = (0i128, extent as i128 - 1);
    let mut any = false;
    let mut ok = true;
    fn walk(e: &Expr, v: Var, r: &mut Ranges, lo: &mut i128, hi: &mut i128, any: &mut bool, ok: &mut bool) {
        match e {
            Expr::Guard { conds, then, .. } => {
                for (ix, bound) in conds {
                    if ix.coeff(v) != 0 {
                        *any = true;
                        *ok &= narrow(ix, *bound, v, r, lo, hi);
                    }
                }
                walk(then, v, r, lo, hi, any, ok);
            }
            Expr::Reduce { var, extent, body, .. } => {
                r.insert(*var, *extent);
                walk(body, v, r, lo, hi, any, ok);
                r.remove(var);
            }
            Expr::Unary(_, a) => walk(a, v, r, lo, hi, any, ok),
            Expr::Binary(_, a, b) => {
                walk(a, v, r, lo, hi, any, ok);
                walk(b, v, r, lo, hi, any, ok);
            }
            Expr::Const(_) | Expr::Load { .. } | Expr::Get(_) => {}
        }
    }
    fn stmts(body: &[Stmt], v: Var, r: &mut Ranges, lo: &mut i128, hi: &mut i128, any: &mut bool, ok: &mut bool) {
        for s in body {
            match s {
                Stmt::For { var, extent, body } => {
                    r.insert(*var, *extent);
                    stmts(body, v, r, lo, hi, any, ok);
                    r.remove(var);
                }
                Stmt::Let { value, .. } | Stmt::Store { value, .. } => walk(value, v, r, lo, hi, any, ok),
                Stmt::Barrier => {}
            }
        }
    }
    let mut r = ranges.clone();
    stmts(body, v, &mut r, &mut lo, &mut hi, &mut any, &mut ok);
    (any && ok).then_some((lo, hi))
}

/// `body` with `v` replaced by `v + start`.
fn shifted(body: &[Stmt], v: Var, start: i64) -> Vec<Stmt> {
    let mut b = body.to_vec();
    for_each_index(&mut b, &mut |ix| ix.offset += ix.coeff(v) * start);
    b
}

/// `body` without the guard conditions that test `v` (proven to hold); guards left with no condition
/// become their guarded expression.
fn unguarded(body: &mut [Stmt], v: Var) {
    fn expr(e: &mut Expr, v: Var) {
        match e {
            Expr::Guard { conds, then, .. } => {
                expr(then, v);
                conds.retain(|(ix, _)| ix.coeff(v) == 0);
                if conds.is_empty() {
                    let inner = std::mem::replace(&mut **then, Expr::Const(0.0));
                    *e = inner;
                }
            }
            Expr::Reduce { body, .. } => expr(body, v),
            Expr::Unary(_, a) => expr(a, v),
            Expr::Binary(_, a, b) => {
                expr(a, v);
                expr(b, v);
            }
            Expr::Const(_) | Expr::Load { .. } | Expr::Get(_) => {}
        }
    }
    for s in body {
        match s {
            Stmt::For { body, .. } => unguarded(body, v),
            Stmt::Let { value, .. } | Stmt::Store { value, .. } => expr(value, v),
            Stmt::Barrier => {}
        }
    }
}

fn split_loop(v: Var, extent: u64, body: Vec<Stmt>, ranges: &Ranges) -> Vec<Stmt> {
    let Some((lo, hi)) = interior(&body, v, extent, ranges) else {
        return vec![Stmt::For { var: v, extent, body }];
    };
    let (lo, hi) = (lo.max(0), hi.min(extent as i128 - 1));
    if lo > hi {
        return vec![Stmt::For { var: v, extent, body }];
    }
    let (lo, hi) = (lo as u64, hi as u64 + 1);
    let mut out = Vec::new();
    if lo > 0 {
        out.push(Stmt::For { var: v, extent: lo, body: body.clone() });
    }
    let mut mid = shifted(&body, v, lo as i64);
    unguarded(&mut mid, v);
    out.push(Stmt::For { var: v, extent: hi - lo, body: mid });
    if hi < extent {
        out.push(Stmt::For { var: v, extent: extent - hi, body: shifted(&body, v, hi as i64) });
    }
    out
}
