//! Device descriptions: the built-in `blackhole` (p150) and `wormhole_b0` (n150) descriptions are data
//! (`targets/tensix/devices/*.json`, each number with its source), and a system-description file of the
//! same JSON form replaces them (`sovc compile --system-desc FILE`).

use sovc_runtime::tensix::program::DeviceDesc;

const BLACKHOLE: &str = include_str!("../devices/blackhole.json");
const WORMHOLE_B0: &str = include_str!("../devices/wormhole_b0.json");

/// The Tensix targets `--target` accepts.
pub const ARCHS: [&str; 2] = ["blackhole", "wormhole_b0"];

/// The built-in description of `arch`.
pub fn builtin(arch: &str) -> Option<DeviceDesc> {
    let text = match arch {
        "blackhole" => BLACKHOLE,
        "wormhole_b0" => WORMHOLE_B0,
        _ => return None,
    };
    // The built-in files are checked by a unit test, so parsing cannot fail here.
    serde_json::from_str(text).ok()
}

/// Reads a system-description file and checks it against the target it is used for.
pub fn from_file(path: &str, arch: &str) -> Result<DeviceDesc, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let d: DeviceDesc = serde_json::from_str(&text).map_err(|e| format!("{path}: not a device description: {e}"))?;
    if d.arch != arch {
        return Err(format!("{path}: describes a `{}` device, but the target is `{arch}`", d.arch));
    }
    check(&d).map_err(|e| format!("{path}: {e}"))?;
    Ok(d)
}

/// Rejects descriptions no program could run on.
pub fn check(d: &DeviceDesc) -> Result<(), String> {
    if d.grid_x == 0 || d.grid_y == 0 || d.grid_x > 64 || d.grid_y > 64 {
        return Err(format!("compute grid {}x{} is out of range", d.grid_x, d.grid_y));
    }
    if d.l1_unreserved_base >= d.l1_bytes || d.l1_bytes > 1 << 24 {
        return Err(format!(
            "L1 of {} B with the first free byte at {} is not usable",
            d.l1_bytes, d.l1_unreserved_base
        ));
    }
    if d.dram_banks == 0 || d.dram_bank_bytes == 0 || d.dram_banks > 64 {
        return Err("needs at least one DRAM bank (and at most 64)".into());
    }
    if d.clock_mhz == 0 || d.dram_gbps.is_nan() || d.dram_gbps <= 0.0 || d.noc_bytes_per_cycle == 0 {
        return Err("clock, DRAM bandwidth and NoC width must be positive".into());
    }
    if !(8..=16).contains(&d.dst_tiles) {
        return Err(format!("Dst of {} tiles: expected 8 to 16", d.dst_tiles));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_descriptions_parse_and_pass_the_checks() {
        for a in ARCHS {
            let d = builtin(a).expect(a);
            assert_eq!(d.arch, a);
            check(&d).unwrap();
            assert!(!d.sources.is_empty());
        }
        assert_eq!(builtin("blackhole").unwrap().cores(), 110);
        assert_eq!(builtin("wormhole_b0").unwrap().cores(), 64);
        assert!(builtin("grayskull").is_none());
    }
}
