#!/usr/bin/env python3
"""Check the models made by scripts/export_models.py against onnxruntime.

Run with the onnx/onnxruntime environment made by scripts/setup-test-deps.sh:

    .venv/bin/python scripts/check_exports.py [--dir DIR] [--ops] [MODEL ...]

For every model folder under DIR (default tests/data/generated/models) this
runs onnx.checker on model.onnx, feeds input.<name>.npy to onnxruntime and
compares with output.<name>.npy (the PyTorch reference), printing the max abs
diff per output; also for every variant listed in manifest.json (other shapes of
models with symbolic dimensions). With --ops it prints the op types of each
graph with their counts. Exits 1 if any diff exceeds --atol + --rtol * |ref|.

onnxruntime's graph optimizations are disabled by default so the graph runs as
exported (--ort-opt turns them on).
"""

import argparse
import collections
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(ROOT, "tests", "data", "generated", "models")


def op_counts(model):
    counts = collections.Counter()

    def walk(graph):
        for node in graph.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            counts[key] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)
    walk(model.graph)
    return counts


def dims(value_info):
    t = value_info.type.tensor_type
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?")
            for d in t.shape.dim]


def compare(sess, folder, manifest_io, atol, rtol, label):
    feeds = {e["name"]: np.load(os.path.join(folder, f"input.{e['name']}.npy")) for e in manifest_io["inputs"]}
    names = [e["name"] for e in manifest_io["outputs"]]
    got = sess.run(names, feeds)
    ok = True
    for name, g in zip(names, got):
        ref = np.load(os.path.join(folder, f"output.{name}.npy"))
        if g.shape != ref.shape or g.dtype != ref.dtype:
            print(f"    {label}{name}: MISMATCH shape/dtype ort {g.shape} {g.dtype} vs ref {ref.shape} {ref.dtype}")
            ok = False
            continue
        diff = np.abs(g.astype(np.float64) - ref.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        bad = bool(np.any(diff > atol + rtol * np.abs(ref)))
        ok &= not bad
        print(f"    {label}{name:18s} {str(list(ref.shape)):16s} max|ref| {float(np.abs(ref).max()):9.4f}  "
              f"max abs diff {max_abs:.3e}  {'FAIL' if bad else 'ok'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="subset to check (default: every folder with a manifest.json)")
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--ops", action="store_true", help="print op type counts per model")
    ap.add_argument("--ort-opt", action="store_true", help="enable onnxruntime graph optimizations")
    args = ap.parse_args()

    names = args.models or sorted(
        d for d in os.listdir(args.dir) if os.path.isfile(os.path.join(args.dir, d, "manifest.json")))
    if not names:
        print(f"no models under {args.dir}; run scripts/setup-test-deps.sh first")
        return 1
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")

    all_ok = True
    for name in names:
        folder = os.path.join(args.dir, name)
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        path = os.path.join(folder, "model.onnx")
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}
        counts = op_counts(model)
        ins = ", ".join(f"{i.name}{dims(i)}" for i in model.graph.input)
        outs = ", ".join(f"{o.name}{dims(o)}" for o in model.graph.output)
        print(f"{name}: opset {opset}, {sum(counts.values())} nodes, "
              f"{len(model.graph.initializer)} initializers; inputs {ins}; outputs {outs}")
        if args.ops:
            print("    ops: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))

        so = ort.SessionOptions()
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if args.ort_opt
                                       else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        so.log_severity_level = 3
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        all_ok &= compare(sess, folder, manifest, args.atol, args.rtol, "")
        for v in manifest.get("variants", []):
            all_ok &= compare(sess, os.path.join(folder, v["dir"]), v, args.atol, args.rtol, f"[{v['dir']}] ")

    print("all outputs match" if all_ok else "SOME OUTPUTS DIFFER")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
