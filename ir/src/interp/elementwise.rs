//! Elementwise ops. Floats are computed in f64 and rounded once to the tensor's type (exact for the basic
//! arithmetic, and at least as accurate as f32 math elsewhere); integers in i64 with wrap-around.

use crate::{dispatch, BinaryOp, DType, Elem, GeluApprox, Op, Tensor, UnaryOp};
use ndarray::{ArrayD, IxDyn, Zip};

/// Applies `f` to every element through f64.
pub fn map_f64(t: &Tensor, f: impl Fn(f64) -> f64) -> Tensor {
    crate::map_same!(t, a => a.mapv(|x| Elem::from_f64(f(x.to_f64()))))
}

/// Applies `f` to every element through i64 (results wrap to the type).
fn map_i64(t: &Tensor, f: impl Fn(i64) -> i64) -> Tensor {
    crate::map_same!(t, a => a.mapv(|x| Elem::from_i64(f(x.to_i64()))))
}

pub fn predicate(t: &Tensor, f: impl Fn(f64) -> bool) -> Tensor {
    Tensor::Bool(dispatch!(t, a => a.mapv(|x| f(x.to_f64()))))
}

pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

pub fn unary(u: UnaryOp, t: &Tensor) -> Result<Tensor, String> {
    let int = t.dtype().is_int();
    Ok(match u {
        UnaryOp::Identity => t.clone(),
        UnaryOp::Neg if int => map_i64(t, i64::wrapping_neg),
        UnaryOp::Abs if int => map_i64(t, i64::wrapping_abs),
        UnaryOp::Sign if int => map_i64(t, i64::signum),
        UnaryOp::Relu if int => map_i64(t, |x| x.max(0)),
        UnaryOp::Neg => map_f64(t, |x| -x),
        UnaryOp::Abs => map_f64(t, f64::abs),
        UnaryOp::Sign => map_f64(t, |x| {
            if x.is_nan() {
                x
            } else if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        UnaryOp::Relu => map_f64(t, |x| if x > 0.0 || x.is_nan() { x } else { 0.0 }),
        UnaryOp::Exp => map_f64(t, f64::exp),
        UnaryOp::Log => map_f64(t, f64::ln),
        UnaryOp::Sqrt => map_f64(t, f64::sqrt),
        UnaryOp::Rsqrt => map_f64(t, |x| 1.0 / x.sqrt()),
        UnaryOp::Reciprocal => map_f64(t, |x| 1.0 / x),
        UnaryOp::Sin => map_f64(t, f64::sin),
        UnaryOp::Cos => map_f64(t, f64::cos),
        UnaryOp::Tan => map_f64(t, f64::tan),
        UnaryOp::Asin => map_f64(t, f64::asin),
        UnaryOp::Acos => map_f64(t, f64::acos),
        UnaryOp::Atan => map_f64(t, f64::atan),
        UnaryOp::Sinh => map_f64(t, f64::sinh),
        UnaryOp::Cosh => map_f64(t, f64::cosh),
        UnaryOp::Asinh => map_f64(t, f64::asinh),
        UnaryOp::Acosh => map_f64(t, f64::acosh),
        UnaryOp::Atanh => map_f64(t, f64::atanh),
        UnaryOp::Tanh => map_f64(t, f64::tanh),
        UnaryOp::Sigmoid => map_f64(t, sigmoid),
        UnaryOp::Erf => map_f64(t, erf),
        UnaryOp::Floor => map_f64(t, f64::floor),
        UnaryOp::Ceil => map_f64(t, f64::ceil),
        UnaryOp::Round => map_f64(t, f64::round_ties_even),
        UnaryOp::Not => match t {
            Tensor::Bool(a) => Tensor::Bool(a.mapv(|x| !x)),
            _ => return Err("not needs bool".into()),
        },
        UnaryOp::IsNaN => predicate(t, f64::is_nan),
        UnaryOp::BitwiseNot => map_i64(t, |x| !x),
        UnaryOp::Softplus => map_f64(t, softplus),
        UnaryOp::Softsign => map_f64(t, |x| x / (1.0 + x.abs())),
        UnaryOp::HardSwish => map_f64(t, |x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
        UnaryOp::Silu => map_f64(t, |x| x * sigmoid(x)),
        UnaryOp::Mish => map_f64(t, |x| x * softplus(x).tanh()),
    })
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

pub fn activation(op: &Op, t: &Tensor) -> Result<Tensor, String> {
    Ok(match *op {
        Op::LeakyRelu { alpha } => {
            let a = alpha as f64;
            map_f64(t, |x| if x < 0.0 { a * x } else { x })
        }
        Op::Elu { alpha } => {
            let a = alpha as f64;
            map_f64(t, |x| if x < 0.0 { a * x.exp_m1() } else { x })
        }
        Op::Selu { alpha, gamma } => {
            let (a, g) = (alpha as f64, gamma as f64);
            map_f64(t, |x| if x <= 0.0 { g * (a * x.exp() - a) } else { g * x })
        }
        Op::Celu { alpha } => {
            let a = alpha as f64;
            map_f64(t, |x| x.max(0.0) + (a * ((x / a).exp() - 1.0)).min(0.0))
        }
        Op::HardSigmoid { alpha, beta } => {
            let (a, b) = (alpha as f64, beta as f64);
            map_f64(t, |x| (a * x + b).clamp(0.0, 1.0))
        }
        Op::ThresholdedRelu { alpha } => {
            let a = alpha as f64;
            map_f64(t, |x| if x > a { x } else { 0.0 })
        }
        Op::Shrink { bias, lambd } => {
            let (b, l) = (bias as f64, lambd as f64);
            map_f64(t, |x| {
                if x < -l {
                    x + b
                } else if x > l {
                    x - b
                } else {
                    0.0
                }
            })
        }
        Op::Gelu { approximate } => match approximate {
            GeluApprox::None => map_f64(t, |x| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))),
            GeluApprox::Tanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                map_f64(t, |x| 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh()))
            }
        },
        _ => return Err(format!("{} is not an activation", op.name())),
    })
}

/// Broadcasts `a` and `b` and combines them elementwise into a new array.
fn zip_broadcast<A: Copy, B: Copy, C>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C,
) -> Result<ArrayD<C>, String> {
    let shape = crate::broadcast_shapes(&crate::Shape::from_consts(a.shape()), &crate::Shape::from_consts(b.shape()))
        .and_then(|s| s.as_consts())
        .ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", a.shape(), b.shape()))?;
    let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

fn binary_typed<T: Elem>(op: BinaryOp, a: &ArrayD<T>, b: &ArrayD<T>) -> Result<Tensor, String> {
    let float = T::DTYPE.is_float();
    if op.is_comparison() {
        let f: fn(f64, f64) -> bool = match op {
            BinaryOp::Equal => |x, y| x == y,
            BinaryOp::Less => |x, y| x < y,
            BinaryOp::LessEqual => |x, y| x <= y,
            BinaryOp::Greater => |x, y| x > y,
            _ => |x, y| x >= y,
        };
        if float {
            return zip_broadcast(a, b, |x, y| f(x.to_f64(), y.to_f64())).map(Tensor::Bool);
        }
        let g: fn(i64, i64) -> bool = match op {
            BinaryOp::Equal => |x, y| x == y,
            BinaryOp::Less => |x, y| x < y,
            BinaryOp::LessEqual => |x, y| x <= y,
            BinaryOp::Greater => |x, y| x > y,
            _ => |x, y| x >= y,
        };
        return zip_broadcast(a, b, |x, y| g(x.to_i64(), y.to_i64())).map(Tensor::Bool);
    }
    if float {
        let f: fn(f64, f64) -> f64 = match op {
            BinaryOp::Add => |x, y| x + y,
            BinaryOp::Sub => |x, y| x - y,
            BinaryOp::Mul => |x, y| x * y,
            BinaryOp::Div => |x, y| x / y,
            BinaryOp::Pow => f64::powf,
            BinaryOp::Max => |x, y| if x.is_nan() || y.is_nan() { f64::NAN } else { x.max(y) },
            BinaryOp::Min => |x, y| if x.is_nan() || y.is_nan() { f64::NAN } else { x.min(y) },
            BinaryOp::Fmod => |x, y| x % y,
            BinaryOp::Mod => |x, y| {
                let r = x % y;
                if r != 0.0 && (r < 0.0) != (y < 0.0) {
                    r + y
                } else {
                    r
                }
            },
            BinaryOp::PRelu => |x, s| if x < 0.0 { s * x } else { x },
            _ => return Err(format!("{} is not defined for {}", op.as_str(), T::DTYPE)),
        };
        // f32 arithmetic rounded from f64 equals f32 arithmetic for + - * / (double rounding is exact there).
        return zip_broadcast(a, b, |x, y| T::from_f64(f(x.to_f64(), y.to_f64()))).map(T::wrap);
    }
    if T::DTYPE == DType::Bool {
        let f: fn(bool, bool) -> bool = match op {
            BinaryOp::And => |x, y| x & y,
            BinaryOp::Or => |x, y| x | y,
            BinaryOp::Xor => |x, y| x ^ y,
            _ => return Err(format!("{} is not defined for bool", op.as_str())),
        };
        return zip_broadcast(a, b, |x, y| T::from_i64(f(x.to_i64() != 0, y.to_i64() != 0) as i64)).map(T::wrap);
    }
    let bits = (T::DTYPE.size() * 8) as u32;
    let unsigned = !T::DTYPE.is_signed();
    let f: Box<dyn Fn(i64, i64) -> Result<i64, ()>> = match op {
        BinaryOp::Add => Box::new(|x, y| Ok(x.wrapping_add(y))),
        BinaryOp::Sub => Box::new(|x, y| Ok(x.wrapping_sub(y))),
        BinaryOp::Mul => Box::new(|x, y| Ok(x.wrapping_mul(y))),
        BinaryOp::Div => Box::new(|x, y| if y == 0 { Err(()) } else { Ok(x.wrapping_div(y)) }),
        BinaryOp::Max => Box::new(|x, y| Ok(x.max(y))),
        BinaryOp::Min => Box::new(|x, y| Ok(x.min(y))),
        BinaryOp::Fmod => Box::new(|x, y| if y == 0 { Err(()) } else { Ok(x.wrapping_rem(y)) }),
        // The sign of the divisor (Python's %); `r + y` cannot overflow as r and y differ in sign.
        BinaryOp::Mod => Box::new(|x, y| {
            if y == 0 {
                return Err(());
            }
            let r = x.wrapping_rem(y);
            Ok(if r != 0 && (r < 0) != (y < 0) { r + y } else { r })
        }),
        BinaryOp::Pow => Box::new(|x, y| Ok((x as f64).powf(y as f64) as i64)),
        BinaryOp::BitAnd => Box::new(|x, y| Ok(x & y)),
        BinaryOp::BitOr => Box::new(|x, y| Ok(x | y)),
        BinaryOp::BitXor => Box::new(|x, y| Ok(x ^ y)),
        BinaryOp::ShiftLeft => Box::new(move |x, y| Ok(if y < 0 || y as u32 >= bits { 0 } else { x << y })),
        BinaryOp::ShiftRight => Box::new(move |x, y| {
            if y < 0 || y as u32 >= bits {
                return Ok(0);
            }
            // Logical shift for unsigned types, arithmetic for signed ones.
            Ok(if unsigned { ((x as u64 & mask(bits)) >> y) as i64 } else { x >> y })
        }),
        BinaryOp::PRelu => Box::new(|x, s| Ok(if x < 0 { s.wrapping_mul(x) } else { x })),
        _ => return Err(format!("{} is not defined for {}", op.as_str(), T::DTYPE)),
    };
    let div_by_zero = std::cell::Cell::new(false);
    let out = zip_broadcast(a, b, |x, y| match f(x.to_i64(), y.to_i64()) {
        Ok(v) => T::from_i64(v),
        Err(()) => {
            div_by_zero.set(true);
            T::default()
        }
    });
    if div_by_zero.get() {
        return Err("integer division by zero".into());
    }
    out.map(T::wrap)
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    if op == BinaryOp::Pow && a.dtype() != b.dtype() {
        return binary(op, a, &b.cast(a.dtype()));
    }
    if a.dtype() != b.dtype() {
        return Err(format!("element types differ: {} and {}", a.dtype(), b.dtype()));
    }
    macro_rules! go {
        ($($v:ident),*) => {
            match (a, b) {
                $((Tensor::$v(x), Tensor::$v(y)) => binary_typed(op, x, y),)*
                _ => unreachable!("dtypes checked equal"),
            }
        };
    }
    go!(F32, F16, BF16, F64, I8, U8, I32, I64, Bool)
}

pub fn where_(c: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let Tensor::Bool(c) = c else { return Err("condition must be bool".into()) };
    if a.dtype() != b.dtype() {
        return Err("branches differ in element type".into());
    }
    macro_rules! go {
        ($($v:ident),*) => {
            match (a, b) {
                $((Tensor::$v(x), Tensor::$v(y)) => {
                    let xy = zip_broadcast(x, y, |p, q| (p, q))?;
                    Ok(Tensor::$v(zip_broadcast(c, &xy, |k, (p, q)| if k { p } else { q })?))
                })*
                _ => unreachable!("dtypes checked equal"),
            }
        };
    }
    go!(F32, F16, BF16, F64, I8, U8, I32, I64, Bool)
}

pub fn clip(x: &Tensor, lo: &Tensor, hi: &Tensor) -> Result<Tensor, String> {
    if x.dtype().is_float() {
        let (l, h) = (lo.to_f64_vec()[0], hi.to_f64_vec()[0]);
        Ok(map_f64(x, |v| if v.is_nan() { v } else { v.max(l).min(h) }))
    } else {
        let (l, h) = (lo.to_i64_vec()[0], hi.to_i64_vec()[0]);
        Ok(map_i64(x, |v| v.max(l).min(h)))
    }
}
