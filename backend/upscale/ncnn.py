"""Reading ncnn models and converting an ncnn Real-ESRGAN (RRDBNet) to a torch state dict.

An ncnn model is two files:

* ``.param`` (text): a magic line ``7767517``, a line ``<layer count> <blob count>``, then one
  line per layer: ``Type Name n_bottom n_top bottom… top… key=value…``. A key below -23300 is
  an array: ``-23310=2,1.0,2.0`` is array key 10 with 2 values.
* ``.bin``: the weights of the layers that have any, in layer order. A Convolution stores its
  weight (``6=`` values, laid out out×in×kh×kw as in torch) after a 4-byte tag that says the
  encoding: ``0x01306B47`` fp16, ``0x000D4B38`` int8, ``0`` float32 (other tags: a 256-entry
  quantisation table); then, if ``5=1``, its bias as raw float32 without a tag. Each blob is
  padded to a multiple of 4 bytes.

The graph of Real-ESRGAN x4plus as exported to ncnn is RRDBNet: ``conv_first``; 23 RRDB blocks
of 3 residual dense blocks of 5 convolutions (leaky ReLU 0.2 after the first four, outputs
summed as ``0.2·x + input``); ``conv_body`` added to the trunk; two ×2 nearest upsamplings each
followed by a convolution; ``conv_hr``; ``conv_last``. :func:`rrdbnet_state_dict` checks that
structure layer by layer (not just the count of convolutions) and names the weights as
BasicSR's ``RRDBNet`` does, which spandrel loads as ESRGAN.

:func:`run_graph` executes a parsed graph with plain torch ops (the handful of layer types these
models use): a check of the conversion that does not depend on our naming of the weights.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_RAW_SCALED = 0x0002C056


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, object]
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def int(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))

    def float(self, key: int, default: float = 0.0) -> float:
        return float(self.params.get(key, default))


def _value(text: str):
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(text: str) -> list[Layer]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != str(MAGIC):
        raise ModelError("This is not an ncnn .param file (its first line is not 7767517).")
    n_layers = int(lines[1].split()[0])
    layers = []
    for line in lines[2: 2 + n_layers]:
        parts = line.split()
        kind, name, nb, nt = parts[0], parts[1], int(parts[2]), int(parts[3])
        bottoms = parts[4: 4 + nb]
        tops = parts[4 + nb: 4 + nb + nt]
        params: dict[int, object] = {}
        for item in parts[4 + nb + nt:]:
            key, _, value = item.partition("=")
            k = int(key)
            if k <= -23300:
                values = value.split(",")
                params[-k - 23300] = [_value(v) for v in values[1: 1 + int(values[0])]]
            else:
                params[k] = _value(value)
        layers.append(Layer(kind, name, bottoms, tops, params))
    if len(layers) != n_layers:
        raise ModelError(f"The ncnn .param file is truncated: it declares {n_layers} layers but has {len(layers)}.")
    return layers


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ModelError("The ncnn .bin file is shorter than its .param file needs: it is truncated or does not match.")
        chunk = self.data[self.pos: self.pos + n]
        self.pos += n
        return chunk

    def raw_float32(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * count), "<f4").copy()

    def tagged(self, count: int) -> np.ndarray:
        """ncnn's ModelBin::load(w, type=0): a 4-byte tag, then the data in that encoding."""
        tag, = struct.unpack("<I", self._take(4))
        if tag == TAG_FP16:
            data = np.frombuffer(self._take(2 * count), "<f2").astype(np.float32)
            self._take((-2 * count) % 4)
            return data
        if tag == TAG_RAW_SCALED:
            return self.raw_float32(count)
        if tag == TAG_INT8:
            raise ModelError("This ncnn model holds int8-quantised weights, which cannot be converted: use an fp16/fp32 model.")
        if tag == 0:
            return self.raw_float32(count)
        table = self.raw_float32(256)  # quantised: a 256-entry lookup table, then one index byte per weight
        index = np.frombuffer(self._take(count), np.uint8)
        self._take((-count) % 4)
        return table[index]


def load_ncnn(param_path: str | Path, bin_path: str | Path) -> list[Layer]:
    """Parses the graph and reads the weights of its Convolution layers."""
    layers = parse_param(Path(param_path).read_text())
    reader = _Reader(Path(bin_path).read_bytes())
    for layer in layers:
        if layer.type == "Convolution":
            n_out, k, size = layer.int(0), layer.int(1), layer.int(6)
            if layer.int(11, k) != k or layer.int(3, 1) != 1 or layer.int(2, 1) != 1:
                raise ModelError(f"ncnn layer {layer.name} is not a square, stride-1, undilated convolution: not supported.")
            n_in = size // (n_out * k * k)
            layer.weights["weight"] = reader.tagged(size).reshape(n_out, n_in, k, k)
            if layer.int(5):
                layer.weights["bias"] = reader.raw_float32(n_out)
        elif layer.type in ("InnerProduct", "Deconvolution", "ConvolutionDepthWise", "BatchNorm", "Scale", "PReLU"):
            raise ModelError(f"ncnn layer type {layer.type} has weights this converter does not read.")
    if reader.pos != len(reader.data):
        raise ModelError(
            f"The ncnn .bin file has {len(reader.data) - reader.pos} bytes more than its .param file describes: "
            "they do not belong together."
        )
    return layers


# --- RRDBNet ------------------------------------------------------------------------------------

def _convs(layers: list[Layer]) -> list[Layer]:
    return [layer for layer in layers if layer.type == "Convolution"]


def rrdbnet_state_dict(layers: list[Layer]) -> dict[str, np.ndarray]:
    """BasicSR RRDBNet names for the weights of an ncnn Real-ESRGAN graph, after checking its structure."""
    by_top = {top: layer for layer in layers for top in layer.tops}

    def producer(blob: str) -> Layer:
        layer = by_top[blob]
        while layer.type == "Split":  # Split is a fan-out: look through it
            layer = by_top[layer.bottoms[0]]
        return layer

    def fail(why: str):
        raise ModelError(f"This ncnn model is not an RRDBNet (Real-ESRGAN) graph ({why}): it cannot be converted.")

    convs = _convs(layers)
    if (len(convs) - 6) % 15 or len(convs) < 21:
        fail(f"{len(convs)} convolutions")
    n_blocks = (len(convs) - 6) // 15
    state: dict[str, np.ndarray] = {}

    def put(name: str, conv: Layer, lrelu: bool):
        has = conv.int(9) == 2 and abs(float(conv.params.get(10, [0.0])[0]) - 0.2) < 1e-6
        if has != lrelu:
            fail(f"{conv.name} {'lacks' if lrelu else 'has'} a leaky ReLU")
        if "bias" not in conv.weights:
            fail(f"{conv.name} has no bias")
        state[f"{name}.weight"] = conv.weights["weight"]
        state[f"{name}.bias"] = conv.weights["bias"]

    it = iter(convs)
    first = next(it)
    put("conv_first", first, False)
    for b in range(n_blocks):
        for r in range(3):
            block = [next(it) for _ in range(5)]
            for c, conv in enumerate(block):
                put(f"body.{b}.rdb{r + 1}.conv{c + 1}", conv, c < 4)
                # dense connections: conv c sees the block input and the c earlier outputs
                inputs = [producer(x) for x in conv.bottoms]
                if c > 0:
                    if len(inputs) != 1 or inputs[0].type != "Concat" or len(inputs[0].bottoms) != c + 1:
                        fail(f"{conv.name} is not fed by a dense concatenation")
                    fed = [producer(x) for x in inputs[0].bottoms[1:]]
                    if fed != block[:c]:
                        fail(f"{conv.name} is not fed by the convolutions before it")
            # the block output: 0.2 * conv5 + block input
            adds = [layer for layer in layers if layer.type == "Eltwise" and producer(layer.bottoms[0]) is block[4]]
            if len(adds) != 1 or adds[0].params.get(1) != [0.2, 1.0]:
                fail(f"the output of {block[4].name} is not added with weights 0.2 and 1")
    put("conv_body", next(it), False)
    tail = [next(it) for _ in range(4)]
    for name, conv, lrelu in zip(("conv_up1", "conv_up2", "conv_hr", "conv_last"), tail, (True, True, True, False)):
        put(name, conv, lrelu)
    for conv in tail[:2]:
        src = producer(conv.bottoms[0])
        if src.type != "Interp" or src.int(0) != 1 or src.float(1) != 2.0 or src.float(2) != 2.0:
            fail(f"{conv.name} does not follow a ×2 nearest upsampling")
    return state


def convert_rrdbnet(param_path: str | Path, bin_path: str | Path) -> dict:
    """The torch state dict (float32 tensors) of an ncnn Real-ESRGAN model."""
    import torch

    state = rrdbnet_state_dict(load_ncnn(param_path, bin_path))
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


# --- a reference executor -------------------------------------------------------------------

def run_graph(layers: list[Layer], x):
    """Runs a parsed ncnn graph on an NCHW float tensor with plain torch ops (for verification)."""
    import torch
    import torch.nn.functional as F

    blobs = {}
    out_name = None
    for layer in layers:
        ins = [blobs[b] for b in layer.bottoms]
        t = layer.type
        if t == "Input":
            y = [x]
        elif t == "Split":
            y = ins * len(layer.tops)
        elif t == "Convolution":
            w = torch.from_numpy(layer.weights["weight"])
            b = torch.from_numpy(layer.weights["bias"]) if "bias" in layer.weights else None
            v = F.conv2d(ins[0], w, b, padding=layer.int(4))
            if layer.int(9) == 2:
                v = F.leaky_relu(v, float(layer.params.get(10, [0.0])[0]))
            elif layer.int(9) == 1:
                v = F.relu(v)
            y = [v]
        elif t == "Concat":
            y = [torch.cat(ins, dim=1)]
        elif t == "Eltwise":
            if layer.int(0) != 1:
                raise ModelError(f"ncnn Eltwise operation {layer.int(0)} is not supported.")
            coeffs = layer.params.get(1) or [1.0] * len(ins)
            y = [sum(c * v for c, v in zip(coeffs, ins))]
        elif t == "BinaryOp":
            if layer.int(0) != 0:
                raise ModelError(f"ncnn BinaryOp operation {layer.int(0)} is not supported.")
            y = [ins[0] + ins[1]]
        elif t == "Interp":
            mode = {1: "nearest", 2: "bilinear"}[layer.int(0)]
            y = [F.interpolate(ins[0], scale_factor=(layer.float(1), layer.float(2)), mode=mode)]
        else:
            raise ModelError(f"ncnn layer type {t} is not supported by the reference executor.")
        for name, value in zip(layer.tops, y):
            blobs[name] = value
        out_name = layer.tops[-1]
    return blobs[out_name]
