"""Times an N x N x N fp32 matmul on numpy and on onnxruntime (the peers of benches/src/main.rs).

Usage: python matmul_peer.py N ITERS THREADS  ->  prints
{"numpy_median_ms": ..., "numpy_min_ms": ..., "ort_median_ms": ..., "ort_min_ms": ...} as JSON.

numpy's BLAS reads its thread count when numpy is imported, so the caller must set OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MKL_NUM_THREADS in this process's environment (benches/src/main.rs does); this script
sets them from THREADS only where they are unset, before importing numpy.
"""
import json
import os
import sys
import time

n, iters, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, str(threads))

import numpy as np  # noqa: E402  (after the thread count is in the environment)
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

WARMUP = 3

rng = np.random.default_rng(0)
a = rng.uniform(-1.0, 1.0, (n, n)).astype(np.float32)
b = rng.uniform(-1.0, 1.0, (n, n)).astype(np.float32)


def timed(f):
    for _ in range(WARMUP):
        f()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2], times[0]


np_median, np_min = timed(lambda: np.matmul(a, b))

graph = helper.make_graph(
    [helper.make_node("MatMul", ["a", "b"], ["c"])],
    "matmul",
    [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n]),
    ],
    [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8  # old enough for any onnxruntime this venv may hold
onnx.checker.check_model(model)
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
feeds = {"a": a, "b": b}
c = sess.run(None, feeds)[0]
if not np.allclose(c, a @ b, rtol=1e-3, atol=1e-3):
    sys.exit("onnxruntime's matmul disagrees with numpy's")
ort_median, ort_min = timed(lambda: sess.run(None, feeds))

print(
    json.dumps(
        {"numpy_median_ms": np_median, "numpy_min_ms": np_min, "ort_median_ms": ort_median, "ort_min_ms": ort_min}
    )
)
