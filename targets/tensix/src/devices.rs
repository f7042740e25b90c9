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

/// Rejects descriptions no program could run on (the runtime checks the same on load).
pub fn check(d: &DeviceDesc) -> Result<(), String> {
    d.check()
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
