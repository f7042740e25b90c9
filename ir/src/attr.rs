//! Attribute values of ops, the generic form every op's typed fields convert to and from. The text form,
//! the e-graph and the importers use this form so that adding an op needs no new printing or parsing code.

use crate::{DType, Shape};
use std::fmt;

/// A generic attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Shape(Shape),
    DType(DType),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Int(v) => write!(f, "{v}"),
            AttrValue::Float(v) => write!(f, "{}", fmt_f32(*v)),
            AttrValue::Ints(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            AttrValue::Floats(v) => {
                f.write_str("f[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(&fmt_f32(*x))?;
                }
                f.write_str("]")
            }
            AttrValue::Str(s) => write!(f, "{s:?}"),
            AttrValue::Shape(s) => write!(f, "shape{s}"),
            AttrValue::DType(d) => write!(f, "{d}"),
        }
    }
}

/// Prints an f32 so that parsing it back gives the same bits (`inf`, `-inf` and `nan` spelled out).
pub fn fmt_f32(v: f32) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{v:?}")
    }
}

/// A Rust type an op field can have, with its conversion to and from [`AttrValue`].
pub trait AttrType: Sized {
    fn to_attr(&self) -> AttrValue;
    fn from_attr(v: &AttrValue) -> Option<Self>;
}

impl AttrType for i64 {
    fn to_attr(&self) -> AttrValue {
        AttrValue::Int(*self)
    }
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Int(x) => Some(*x),
            _ => None,
        }
    }
}

impl AttrType for bool {
    fn to_attr(&self) -> AttrValue {
        AttrValue::Int(*self as i64)
    }
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Int(0) => Some(false),
            AttrValue::Int(1) => Some(true),
            _ => None,
        }
    }
}

impl AttrType for f32 {
    fn to_attr(&self) -> AttrValue {
        AttrValue::Float(*self)
    }
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Float(x) => Some(*x),
            AttrValue::Int(x) => Some(*x as f32),
            _ => None,
        }
    }
}

impl AttrType for Vec<i64> {
    fn to_attr(&self) -> AttrValue {
        AttrValue::Ints(self.clone())
    }
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Ints(x) => Some(x.clone()),
            _ => None,
        }
    }
}

impl AttrType for Vec<f32> {
    fn to_attr(&self) -> AttrValue {
        AttrValue::Floats(self.clone())
    }
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Floats(x) => Some(x.clone()),
            _ => None,
        }
    }
}

impl AttrType for String {
    fn to_attr(&self) -> AttrValue {
        AttrValue::Str(self.clone())
    }
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Str(x) => Some(x.clone()),
            _ => None,
        }
    }
}

impl AttrType for Shape {
    fn to_attr(&self) -> AttrValue {
        AttrValue::Shape(self.clone())
    }
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Shape(x) => Some(x.clone()),
            _ => None,
        }
    }
}

impl AttrType for DType {
    fn to_attr(&self) -> AttrValue {
        AttrValue::DType(*self)
    }
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::DType(x) => Some(*x),
            _ => None,
        }
    }
}

/// Declares a closed enum of keywords usable as an op field (printed as a bare word string).
#[macro_export]
macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $var),* }
        impl $name {
            /// Every keyword, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$var),)* _ => None }
            }
        }
        impl $crate::attr::AttrType for $name {
            fn to_attr(&self) -> $crate::AttrValue {
                $crate::AttrValue::Str(self.as_str().to_string())
            }
            fn from_attr(v: &$crate::AttrValue) -> Option<Self> {
                match v { $crate::AttrValue::Str(s) => Self::parse(s), _ => None }
            }
        }
    };
}
