#!/usr/bin/env python3
"""Exports a backbone checkpoint folder for polyhead's `onnxruntime` and `openvino`
backends.

Writes, into OUT_DIR:
  model.onnx       f32 transformer (input_ids, attention_mask -> last hidden states),
                   graph-fused offline by onnxruntime's transformer optimizer
  model.int8.onnx  the same with int8 per-channel weights, activations quantised
                   dynamically (ONNX Runtime's quantize_dynamic)
  model.openvino.xml/.bin
                   OpenVINO IR of the unfused f32 graph (openvino.convert_model),
                   weights kept f32: OpenVINO picks bf16 itself where the CPU runs it
  export.json      sha256 of the source model.safetensors and config.json, the versions
                   used; polyhead refuses an export whose source hash does not match
                   the folder it serves, so a stale export is never served silently

Pooling and normalisation stay in polyhead (the same code as the torch backend), so
the graph is exactly the transformer. token_type_ids are all 0 for one-sentence inputs
and are made inside the graph.

usage: export_onnx.py MODEL_DIR OUT_DIR
"""
import hashlib
import json
import os
import sys
import tempfile


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    import onnxruntime
    import openvino
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.load(open(os.path.join(model_dir, "config.json")))
    # Eager attention exports the classic pattern ONNX Runtime's optimizer fuses into
    # one Attention operator (SDPA's does not fuse).
    model = transformers.AutoModel.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager").eval()

    class Transformer(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids=None, attention_mask=None):
            return self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state

    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        raw = os.path.join(tmp, "raw.onnx")
        ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
        mask = (ids != 0).long()
        with torch.no_grad():
            torch.onnx.export(
                Transformer(model), (), raw, dynamo=False,
                kwargs={"input_ids": ids, "attention_mask": mask},
                input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                dynamic_axes={k: {0: "batch", 1: "seq"} for k in ("input_ids", "attention_mask", "hidden")},
                opset_version=17,
            )
        fused = optimize_model(
            raw, model_type="bert",
            num_heads=config["num_attention_heads"], hidden_size=config["hidden_size"],
            opt_level=1, use_gpu=False,
        )
        f32 = os.path.join(tmp, "model.onnx")
        fused.save_model_to_file(f32)
        # int8 from the unfused graph (the quantizer cannot type the fused one), with
        # per-channel weight scales: on this model per-tensor scales give cosine 0.91 to
        # f32 at worst, per-channel 0.977 (BENCHMARKS.md).
        int8 = os.path.join(tmp, "model.int8.onnx")
        quantize_dynamic(raw, int8, weight_type=QuantType.QInt8, per_channel=True)
        # OpenVINO reads the unfused graph (the fused one has ONNX Runtime's own
        # operators); f32 weights, so its f32 is exact and its bf16 is its own choice.
        ov_model = openvino.convert_model(raw)
        openvino.save_model(ov_model, os.path.join(tmp, "model.openvino.xml"),
                            compress_to_fp16=False)
        meta = {
            "format": "polyhead-onnx-v2",
            "source_model_sha256": sha256(os.path.join(model_dir, "model.safetensors")),
            "source_config_sha256": sha256(os.path.join(model_dir, "config.json")),
            "opset": 17,
            "inputs": ["input_ids", "attention_mask"],
            "output": "hidden",
            "files": {"f32": "model.onnx", "int8": "model.int8.onnx",
                      "openvino": "model.openvino.xml"},
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__,
            "fusions": fused.get_fused_operator_statistics(),
        }
        # The old export.json goes first: without it no reader trusts half-replaced files.
        if os.path.exists(os.path.join(out_dir, "export.json")):
            os.remove(os.path.join(out_dir, "export.json"))
        for name in ("model.onnx", "model.int8.onnx", "model.openvino.xml", "model.openvino.bin"):
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
        # Written last: its presence says the export is complete.
        with open(os.path.join(tmp, "export.json"), "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(os.path.join(tmp, "export.json"), os.path.join(out_dir, "export.json"))
    print(json.dumps({"out": out_dir, "fusions": meta["fusions"]}))


if __name__ == "__main__":
    main()
