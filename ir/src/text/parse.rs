//! Parsing the `.sov` text form back into a graph. Result types written in the text are checked against
//! shape inference, so a hand-edited file cannot smuggle in an ill-typed graph.

use super::lex::{Lexer, Tok};
use crate::{AttrValue, ConstData, DType, Dim, Graph, IrError, Op, Shape, Tensor, TensorType, ValueId, WeightRef};
use std::collections::{BTreeMap, HashMap};

/// Parses a `.sov` text into a graph.
pub fn parse(src: &str) -> Result<Graph, IrError> {
    let mut g = Graph::new();
    let mut ids: HashMap<u32, ValueId> = HashMap::new();
    let mut saw_header = false;
    for (i, line) in src.lines().enumerate() {
        let lineno = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut lx = Lexer::new(line, lineno);
        if !saw_header {
            if trimmed != super::HEADER {
                return Err(lx.err(format!("expected `{}` as the first line", super::HEADER)));
            }
            saw_header = true;
            continue;
        }
        let mut p = LineParser { lx: &mut lx, ids: &mut ids };
        p.line(&mut g)?;
    }
    if !saw_header {
        return Err(IrError::Parse { line: 1, col: 1, msg: format!("empty file: expected `{}`", super::HEADER) });
    }
    Ok(g)
}

struct LineParser<'a, 'b> {
    lx: &'a mut Lexer<'b>,
    ids: &'a mut HashMap<u32, ValueId>,
}

impl LineParser<'_, '_> {
    fn next(&mut self) -> Result<Tok, IrError> {
        self.lx.next()?.ok_or_else(|| self.lx.err("unexpected end of line"))
    }

    fn expect(&mut self, p: &'static str) -> Result<(), IrError> {
        match self.next()? {
            Tok::Punct(q) if q == p => Ok(()),
            t => Err(self.lx.err(format!("expected `{p}`, found {t:?}"))),
        }
    }

    fn eat(&mut self, p: &'static str) -> Result<bool, IrError> {
        if self.lx.peek()? == Some(Tok::Punct(p)) {
            self.lx.next()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn string(&mut self) -> Result<String, IrError> {
        match self.next()? {
            Tok::Str(s) => Ok(s),
            t => Err(self.lx.err(format!("expected a string, found {t:?}"))),
        }
    }

    fn ident(&mut self) -> Result<String, IrError> {
        match self.next()? {
            Tok::Ident(s) => Ok(s),
            t => Err(self.lx.err(format!("expected a name, found {t:?}"))),
        }
    }

    fn value_number(&mut self) -> Result<u32, IrError> {
        match self.next()? {
            Tok::Value(v) => Ok(v),
            t => Err(self.lx.err(format!("expected a value `%N`, found {t:?}"))),
        }
    }

    fn use_value(&mut self) -> Result<ValueId, IrError> {
        let n = self.value_number()?;
        self.ids.get(&n).copied().ok_or_else(|| self.lx.err(format!("value %{n} is used before it is defined")))
    }

    fn define(&mut self, n: u32, v: ValueId) -> Result<(), IrError> {
        if self.ids.insert(n, v).is_some() {
            return Err(self.lx.err(format!("value %{n} is defined twice")));
        }
        Ok(())
    }

    fn int(&mut self) -> Result<i64, IrError> {
        match self.next()? {
            Tok::Num(s) => s.parse().map_err(|_| self.lx.err(format!("expected an integer, found `{s}`"))),
            t => Err(self.lx.err(format!("expected an integer, found {t:?}"))),
        }
    }

    fn ty(&mut self) -> Result<TensorType, IrError> {
        let d = self.ident()?;
        let dtype = DType::from_name(&d).ok_or_else(|| self.lx.err(format!("unknown element type `{d}`")))?;
        let shape = self.shape()?;
        Ok(TensorType::new(dtype, shape))
    }

    fn shape(&mut self) -> Result<Shape, IrError> {
        self.expect("[")?;
        let mut dims = Vec::new();
        if self.eat("]")? {
            return Ok(Shape(dims));
        }
        loop {
            match self.next()? {
                Tok::Num(s) => {
                    dims.push(Dim::Const(s.parse().map_err(|_| self.lx.err(format!("bad dimension `{s}`")))?))
                }
                Tok::Ident(name) => {
                    let max = if self.eat("<=")? { Some(self.int()? as u64) } else { None };
                    dims.push(Dim::Sym { name, max });
                }
                t => return Err(self.lx.err(format!("expected a dimension, found {t:?}"))),
            }
            if self.eat("]")? {
                return Ok(Shape(dims));
            }
            self.expect(",")?;
        }
    }

    fn line(&mut self, g: &mut Graph) -> Result<(), IrError> {
        match self.lx.peek()? {
            Some(Tok::Ident(k)) if k == "input" => {
                self.next()?;
                let n = self.value_number()?;
                let name = self.string()?;
                self.expect(":")?;
                let ty = self.ty()?;
                let v = g.add_input(name, ty);
                self.define(n, v)?;
            }
            Some(Tok::Ident(k)) if k == "const" => {
                self.next()?;
                let n = self.value_number()?;
                let name = self.string()?;
                self.expect(":")?;
                let ty = self.ty()?;
                self.expect("=")?;
                let data = if self.lx.peek()? == Some(Tok::Ident("weight".into())) {
                    self.next()?;
                    let file = self.string()?;
                    let key = self.string()?;
                    ConstData::Weight(WeightRef { file, key })
                } else {
                    ConstData::Inline(self.literal(&ty)?)
                };
                let v = g.add_const(name, ty, data);
                self.define(n, v)?;
            }
            Some(Tok::Ident(k)) if k == "output" => {
                self.next()?;
                let name = self.string()?;
                self.expect("=")?;
                let v = self.use_value()?;
                g.add_output(name, v);
            }
            Some(Tok::Value(_)) => self.node(g)?,
            t => return Err(self.lx.err(format!("expected `input`, `const`, `output` or `%N`, found {t:?}"))),
        }
        if !self.lx.at_end() {
            return Err(self.lx.err("unexpected text at end of line"));
        }
        Ok(())
    }

    fn literal(&mut self, ty: &TensorType) -> Result<Tensor, IrError> {
        let dims = ty.shape.as_consts().ok_or_else(|| self.lx.err("an inline constant needs a static shape"))?;
        self.expect("[")?;
        let mut vals = Vec::new();
        if !self.eat("]")? {
            loop {
                match self.next()? {
                    Tok::Num(s) | Tok::Ident(s) => vals.push(s),
                    t => return Err(self.lx.err(format!("expected a number, found {t:?}"))),
                }
                if self.eat("]")? {
                    break;
                }
                self.expect(",")?;
            }
        }
        let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let want = want
            .filter(|&n| n <= 1 << 24)
            .ok_or_else(|| self.lx.err(format!("inline constant of type {ty} is too large")))?;
        if vals.len() != want {
            return Err(self.lx.err(format!("constant of type {ty} needs {want} elements, found {}", vals.len())));
        }
        if ty.dtype.is_float() {
            let mut f = Vec::with_capacity(vals.len());
            for s in &vals {
                f.push(parse_float(s).ok_or_else(|| self.lx.err(format!("bad number `{s}`")))?);
            }
            Ok(Tensor::from_f64_fn(ty.dtype, &dims, |i| f[i]))
        } else {
            let mut v = Vec::with_capacity(vals.len());
            for s in &vals {
                v.push(s.parse::<i64>().map_err(|_| self.lx.err(format!("bad integer `{s}`")))?);
            }
            Ok(Tensor::from_i64_slice(ty.dtype, &dims, &v))
        }
    }

    fn node(&mut self, g: &mut Graph) -> Result<(), IrError> {
        let mut results = Vec::new();
        loop {
            let n = self.value_number()?;
            self.expect(":")?;
            let ty = self.ty()?;
            results.push((n, ty));
            if !self.eat(",")? {
                break;
            }
        }
        self.expect("=")?;
        let opname = self.ident()?;
        self.expect("(")?;
        let mut inputs = Vec::new();
        if !self.eat(")")? {
            loop {
                inputs.push(self.use_value()?);
                if self.eat(")")? {
                    break;
                }
                self.expect(",")?;
            }
        }
        let mut attrs = BTreeMap::new();
        if self.eat("{")? {
            loop {
                let k = self.ident()?;
                self.expect("=")?;
                let v = self.attr_value()?;
                if attrs.insert(k.clone(), v).is_some() {
                    return Err(self.lx.err(format!("attribute `{k}` given twice")));
                }
                if self.eat("}")? {
                    break;
                }
                self.expect(",")?;
            }
        }
        let name = self.string()?;
        let op = Op::from_name_attrs(&opname, &attrs).map_err(|m| self.lx.err(m))?;
        let outs = g.add_node(op, &inputs, name).map_err(|e| self.lx.err(e.to_string()))?;
        if outs.len() != results.len() {
            return Err(self.lx.err(format!("`{opname}` gives {} results, {} are written", outs.len(), results.len())));
        }
        for ((n, ty), v) in results.into_iter().zip(outs) {
            if *g.ty(v) != ty {
                return Err(self.lx.err(format!("%{n} is written {ty} but `{opname}` gives {}", g.ty(v))));
            }
            self.define(n, v)?;
        }
        Ok(())
    }

    fn attr_value(&mut self) -> Result<AttrValue, IrError> {
        match self.next()? {
            Tok::Num(s) => {
                if let Ok(i) = s.parse::<i64>() {
                    Ok(AttrValue::Int(i))
                } else {
                    parse_float(&s)
                        .map(|f| AttrValue::Float(f as f32))
                        .ok_or_else(|| self.lx.err(format!("bad number `{s}`")))
                }
            }
            Tok::Str(s) => Ok(AttrValue::Str(s)),
            Tok::Punct("[") => {
                let mut v = Vec::new();
                if !self.eat("]")? {
                    loop {
                        v.push(self.int()?);
                        if self.eat("]")? {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(AttrValue::Ints(v))
            }
            Tok::Ident(s) if s == "f" => {
                self.expect("[")?;
                let mut v = Vec::new();
                if !self.eat("]")? {
                    loop {
                        let t = self.next()?;
                        let s = match t {
                            Tok::Num(s) | Tok::Ident(s) => s,
                            t => return Err(self.lx.err(format!("expected a number, found {t:?}"))),
                        };
                        v.push(parse_float(&s).ok_or_else(|| self.lx.err(format!("bad number `{s}`")))? as f32);
                        if self.eat("]")? {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(AttrValue::Floats(v))
            }
            Tok::Ident(s) if s == "shape" => Ok(AttrValue::Shape(self.shape()?)),
            Tok::Ident(s) if s == "inf" || s == "nan" => Ok(AttrValue::Float(parse_float(&s).unwrap_or(0.0) as f32)),
            Tok::Ident(s) => DType::from_name(&s)
                .map(AttrValue::DType)
                .ok_or_else(|| self.lx.err(format!("unknown attribute value `{s}`"))),
            t => Err(self.lx.err(format!("expected an attribute value, found {t:?}"))),
        }
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}
