#!/usr/bin/env python3
"""Export small, randomly initialised PyTorch models to ONNX with reference outputs.

Run with the torch environment made by scripts/setup-test-deps.sh:

    .venv-torch/bin/python scripts/export_models.py [--out DIR] [MODEL ...]

For every model this writes DIR/<name>/ (default DIR: tests/data/generated/models):

    model.onnx              exactly what torch.onnx.export produced (no simplification)
    input.<name>.npy        one per graph input  (float32, or int64 for token ids)
    output.<name>.npy       one per graph output, computed by PyTorch on those inputs
    manifest.json           {"name", "opset", "inputs": [{"name","dtype","shape"}],
                             "outputs": [...], "export_seconds", ...}

Models with symbolic dimensions also get extra reference sets at other shapes in
DIR/<name>/<variant>/ (same file naming), listed under "variants" in the manifest.

Everything is deterministic: fixed seeds, eval mode, dropout off, no downloads
(weights=None / configs built in code). BatchNorm running statistics are
calibrated on seeded random data so activations stay O(1) through the whole
network (with the default mean=0/var=1 a deep random CNN blows up, which makes
absolute-error comparisons meaningless).

After a full run (no model names given) DIR/.stamp is written: first line
"sha256 <hash>" (--stamp-hash, the hash of this script as computed by
setup-test-deps.sh), then one model name per line.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "generated", "models")
DEFAULT_OPSET = 14


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def calibrate_batchnorm(model, make_input, steps=4):
    """Give every BatchNorm realistic affine params and running statistics.

    gamma/beta are drawn at random (seeded), then the running mean/var are set to
    the cumulative batch statistics over `steps` seeded random batches, with only
    the BN layers in training mode (dropout / stochastic depth stay in eval).
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average
    model.eval()
    for bn in bns:
        bn.train()
    with torch.no_grad():
        for _ in range(steps):
            model(make_input())
    model.eval()
    for bn in bns:
        bn.momentum = 0.1


def to_numpy(t):
    return t.detach().cpu().numpy()


def save_arrays(folder, prefix, names, arrays):
    entries = []
    for name, arr in zip(names, arrays):
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        np.save(os.path.join(folder, f"{prefix}.{name}.npy"), arr)
        entries.append({"name": name, "dtype": str(arr.dtype), "shape": list(arr.shape)})
    return entries


def run_torch(module, inputs):
    with torch.no_grad():
        out = module(*inputs)
    if isinstance(out, torch.Tensor):
        out = (out,)
    return [to_numpy(o) for o in out]


def onnx_graph_io(path):
    """Input/output names of the exported graph, read back from the protobuf.

    torch's C++ exporter can serialize without the `onnx` python package, and
    .venv-torch does not have it; use it only when available.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        return None
    import onnx
    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return ([i.name for i in m.graph.input if i.name not in inits],
            [o.name for o in m.graph.output])


# --------------------------------------------------------------------------
# model definitions: each returns a dict describing one export
# --------------------------------------------------------------------------

def tv_model(ctor_name, seed, size=64, **kwargs):
    import torchvision

    def build():
        seed_everything(seed)
        model = getattr(torchvision.models, ctor_name)(weights=None, **kwargs)
        model.eval()
        gen = torch.Generator().manual_seed(seed + 1)
        calibrate_batchnorm(model, lambda: torch.randn(4, 3, size, size, generator=gen))
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed + 2))
        return dict(module=model, inputs=(x,), input_names=["input"], output_names=["logits"])
    return build


class BertWrapper(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids, return_dict=False)
        return out[0], out[1]


def bert_inputs(batch, seq, seed, pad):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 1000, (batch, seq), generator=g, dtype=torch.int64)
    attention_mask = torch.ones(batch, seq, dtype=torch.int64)
    if pad:
        attention_mask[:, seq - pad:] = 0
    token_type_ids = torch.zeros(batch, seq, dtype=torch.int64)
    token_type_ids[:, seq // 2:] = 1
    return (input_ids, attention_mask, token_type_ids)


def build_bert(seed):
    from transformers import BertConfig, BertModel
    seed_everything(seed)
    config = BertConfig(
        vocab_size=1000,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        intermediate_size=1536,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        use_cache=False,
    )
    model = BertModel(config, add_pooling_layer=True)
    model.eval()
    return BertWrapper(model).eval()


BERT_IN = ["input_ids", "attention_mask", "token_type_ids"]
BERT_OUT = ["last_hidden_state", "pooler_output"]


def bert_static():
    module = build_bert(1234)
    return dict(module=module, inputs=bert_inputs(1, 128, 99, pad=16),
                input_names=BERT_IN, output_names=BERT_OUT)


def bert_dynamic():
    module = build_bert(1234)  # same weights as bert_encoder
    dyn = {n: {0: "batch", 1: "sequence"} for n in BERT_IN}
    dyn["last_hidden_state"] = {0: "batch", 1: "sequence"}
    dyn["pooler_output"] = {0: "batch"}  # [batch, hidden]: has no sequence axis
    return dict(module=module, inputs=bert_inputs(1, 128, 99, pad=16),
                input_names=BERT_IN, output_names=BERT_OUT, dynamic_axes=dyn,
                variants={"batch2_seq48": bert_inputs(2, 48, 7, pad=5)})


class GPT2Wrapper(torch.nn.Module):
    def __init__(self, gpt2):
        super().__init__()
        self.gpt2 = gpt2

    def forward(self, input_ids):
        return self.gpt2(input_ids=input_ids, use_cache=False, return_dict=False)[0]


def gpt2_decoder():
    from transformers import GPT2Config, GPT2Model
    seed_everything(4321)
    config = GPT2Config(
        vocab_size=1000,
        n_positions=128,
        n_embd=128,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,
    )
    model = GPT2Model(config).eval()
    g = torch.Generator().manual_seed(77)
    input_ids = torch.randint(0, 1000, (1, 32), generator=g, dtype=torch.int64)
    return dict(module=GPT2Wrapper(model).eval(), inputs=(input_ids,),
                input_names=["input_ids"], output_names=["last_hidden_state"])


MODELS = {
    "resnet18": tv_model("resnet18", 1),
    "mobilenet_v2": tv_model("mobilenet_v2", 2),
    "squeezenet1_1": tv_model("squeezenet1_1", 3),
    "efficientnet_b0": tv_model("efficientnet_b0", 4),
    "resnet50": tv_model("resnet50", 5),
    # Inception-v3 needs at least 75x75; no auxiliary head, so the export has one output.
    "inception_v3": tv_model("inception_v3", 6, size=96, aux_logits=False, init_weights=True),
    "bert_encoder": bert_static,
    "bert_encoder_dynamic": bert_dynamic,
    "gpt2_decoder": gpt2_decoder,
}


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------

def export_one(name, out_dir):
    spec = MODELS[name]()
    module = spec["module"].eval()
    inputs = spec["inputs"]
    opset = spec.get("opset", DEFAULT_OPSET)
    dynamic_axes = spec.get("dynamic_axes")

    final = os.path.join(out_dir, name)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)

    # Reference outputs first, on the untouched eval-mode module.
    ref_outputs = run_torch(module, inputs)

    onnx_path = os.path.join(tmp, "model.onnx")
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings from transformers
        torch.onnx.export(
            module,
            inputs,
            onnx_path,
            export_params=True,
            opset_version=opset,
            do_constant_folding=True,
            input_names=spec["input_names"],
            output_names=spec["output_names"],
            dynamic_axes=dynamic_axes,
            training=torch.onnx.TrainingMode.EVAL,
        )
    export_seconds = time.perf_counter() - t0

    # Tracing must not have changed anything: recompute and compare.
    again = run_torch(module, inputs)
    for a, b in zip(ref_outputs, again):
        if not np.array_equal(a, b):
            raise RuntimeError(f"{name}: PyTorch outputs are not reproducible")

    io = onnx_graph_io(onnx_path)
    if io is not None and (io[0] != spec["input_names"] or io[1] != spec["output_names"]):
        raise RuntimeError(f"{name}: graph io {io} != {spec['input_names']} / {spec['output_names']}")

    manifest = {
        "name": name,
        "opset": opset,
        "inputs": save_arrays(tmp, "input", spec["input_names"], [to_numpy(t) for t in inputs]),
        "outputs": save_arrays(tmp, "output", spec["output_names"], ref_outputs),
        "export_seconds": round(export_seconds, 3),
        "onnx_sha256": hashlib.sha256(open(onnx_path, "rb").read()).hexdigest(),
        "producer": producer_versions(),
    }
    if dynamic_axes:
        manifest["dynamic_axes"] = {k: {str(a): s for a, s in v.items()} for k, v in dynamic_axes.items()}
    variants = []
    for vname, vinputs in spec.get("variants", {}).items():
        vdir = os.path.join(tmp, vname)
        os.makedirs(vdir)
        variants.append({
            "dir": vname,
            "inputs": save_arrays(vdir, "input", spec["input_names"], [to_numpy(t) for t in vinputs]),
            "outputs": save_arrays(vdir, "output", spec["output_names"], run_torch(module, vinputs)),
        })
    if variants:
        manifest["variants"] = variants

    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")

    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    size_kb = os.path.getsize(os.path.join(final, "model.onnx")) / 1024
    shapes = ", ".join(f"{e['name']}{e['shape']}" for e in manifest["outputs"])
    print(f"  {name:22s} opset {opset}  {size_kb:8.0f} KiB  export {export_seconds:6.2f}s  -> {shapes}",
          flush=True)


_PRODUCER = None


def producer_versions():
    global _PRODUCER
    if _PRODUCER is None:
        import torchvision
        import transformers
        _PRODUCER = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__}
    return _PRODUCER


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help=f"subset to export (default: all of {', '.join(MODELS)})")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--stamp-hash", help="hash written to OUT/.stamp after a full export")
    ap.add_argument("--list", action="store_true", help="print the model names and exit")
    args = ap.parse_args()

    if args.list:
        print("\n".join(MODELS))
        return
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(MODELS)}")
    names = args.models or list(MODELS)

    torch.set_grad_enabled(False)
    os.makedirs(args.out, exist_ok=True)
    stamp = os.path.join(args.out, ".stamp")
    if not args.models and os.path.exists(stamp):
        os.remove(stamp)

    v = producer_versions()
    print(f"export_models.py: torch {v['torch']}, torchvision {v['torchvision']}, "
          f"transformers {v['transformers']} -> {os.path.relpath(args.out, ROOT)}", flush=True)
    t0 = time.perf_counter()
    for name in names:
        export_one(name, args.out)
    print(f"exported {len(names)} model(s) in {time.perf_counter() - t0:.1f}s", flush=True)

    if not args.models:
        h = args.stamp_hash or hashlib.sha256(open(os.path.abspath(__file__), "rb").read()).hexdigest()
        with open(stamp, "w") as f:
            f.write(f"sha256 {h}\n")
            for name in names:
                f.write(name + "\n")


if __name__ == "__main__":
    sys.exit(main())
