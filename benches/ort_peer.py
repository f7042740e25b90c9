"""Times onnxruntime on one exported model folder (the peer of benches/src/main.rs).

Usage: python ort_peer.py MODEL_DIR ITERS THREADS  ->  prints {"median_ms": ..., "min_ms": ...} as JSON.
"""
import glob
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

model_dir, iters, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])
feeds = {}
for f in glob.glob(os.path.join(model_dir, "input.*.npy")):
    feeds[os.path.basename(f)[len("input."):-len(".npy")]] = np.load(f)
for _ in range(3):  # warm-up, as the sovc side of benches/src/main.rs does
    sess.run(None, feeds)
times = []
for _ in range(iters):
    t = time.perf_counter()
    sess.run(None, feeds)
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
print(json.dumps({"median_ms": times[len(times) // 2], "min_ms": times[0]}))
