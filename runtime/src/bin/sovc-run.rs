//! `sovc-run`: the minimal runtime as a program. It only loads, verifies and runs `.sovc` artifacts: no
//! importer, optimizer or code generator is linked in (the size of this binary is the runtime's size).
//!
//! Usage: `sovc-run M.sovc NAME=FILE.npy... [-o DIR] [--device cpu|tensix-sim|ptx-emu|cuda|rvv-qemu|vulkan|metal|reference] [--threads N] [--vlen BITS]`

use sovc_runtime::{Artifact, Device, Session};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut artifact = None;
    let mut out = PathBuf::from(".");
    let mut device = None;
    let mut vlen = None;
    let mut threads = sovc_runtime::session::default_threads();
    let mut inputs = BTreeMap::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("usage: sovc-run M.sovc NAME=FILE.npy... [-o DIR] [--device cpu|tensix-sim|ptx-emu|cuda|rvv-qemu|vulkan|metal|reference] [--threads N] [--vlen BITS]");
                println!("the device defaults to the artifact's own (cpu, tensix-sim, ptx-emu, rvv-qemu or vulkan, else reference); --vlen sets rvv-qemu's vector length");
                return Ok(());
            }
            "-o" => out = PathBuf::from(args.next().ok_or("-o needs a folder")?),
            "--device" => device = Some(args.next().ok_or("--device needs a name")?),
            "--vlen" => {
                vlen = Some(
                    args.next()
                        .and_then(|t| t.parse::<u32>().ok())
                        .filter(|v| (128..=1024).contains(v) && v.is_power_of_two())
                        .ok_or("--vlen needs a power of two from 128 to 1024")?,
                )
            }
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|t| t.parse().ok())
                    .filter(|&t| t > 0)
                    .ok_or("--threads needs a positive number")?
            }
            _ if artifact.is_none() => artifact = Some(PathBuf::from(a)),
            _ => {
                let (name, file) = a.split_once('=').ok_or_else(|| format!("`{a}`: expected NAME=FILE.npy"))?;
                inputs.insert(name.to_string(), sovc_runtime::read_npy(file.as_ref()).map_err(|e| e.to_string())?);
            }
        }
    }
    let artifact = artifact.ok_or("usage: sovc-run M.sovc NAME=FILE.npy... [-o DIR]")?;
    let a = Artifact::load(&artifact).map_err(|e| e.to_string())?;
    let d = match device {
        Some(name) => Device::parse(&name).map_err(|e| e.to_string())?,
        None => Device::default_for(&a),
    };
    let mut s = Session::with_threads(&a, d, threads).map_err(|e| e.to_string())?;
    if let Some(v) = vlen {
        s.rvv_options.vlen = v;
    }
    let outs = s.run(&inputs).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, t) in &outs {
        let p = out.join(format!("{}.npy", sovc_runtime::file_safe(name)));
        sovc_runtime::write_npy(&p, t).map_err(|e| e.to_string())?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
