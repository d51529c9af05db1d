#!/usr/bin/env python3
"""Writes the small fixtures of test/tensor.test.ts and test/checkpoint.test.ts into test/fixtures/.

  randn-reference.json  torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for several
                        seeds and shapes, drawn in sequence from one generator per case: all values for
                        small shapes; for big ones values at fixed indices, their float64 sum and the
                        sha256 of the float32 bytes.
  io/dtypes.safetensors every safetensors dtype our loader reads (F64 ... BOOL), 0-d and empty tensors,
                        special values, an odd key; written by Python's safetensors with metadata.
  io/nested.ckpt        torch.save({"state_dict": OrderedDict (a module's state_dict + extras), ...}).
  io/flat.ckpt          torch.save of a flat dict: views with storage offsets, non-contiguous and
                        expanded strides, shared storages, fp16, int32 0-d, an nn.Parameter.
  io/expected.json      per file: metadata and, per tensor, dtype, shape and the hex of the bytes
                        Tensor.toArray() must give (float16/bfloat16 widened to float32, C order).
  io/pwned-*.ckpt       zips laid out like torch.save whose data.pkl would run a command (os.system,
                        builtins.exec, subprocess.check_call, INST) creating /tmp/sdtorch-pwned-<name>.
  io/opcode-*.ckpt      pickles using OBJ / NEWOBJ on an allowed class: refused for the opcode alone.
  io/bad-*.ckpt         tensor records whose view lies outside their storage, some by integer overflow.
  io/zip-plain.ckpt, io/zip64.ckpt  {"w": arange(4)} in zips written by hand, plain and ZIP64.
  io/bad-zip64-*.ckpt   ZIP64 offsets near 2**64 that wrap around in bounds checks.
  io/legacy.pt          a pre-zip torch.save file (unsupported, must say so).
  io/not-a-checkpoint.zip  a zip without data.pkl.
  io/nested-twice.ckpt  {"state_dict": {"state_dict": the state_dict of nested.ckpt}}.
  io/nested-cycle.ckpt  {"state_dict": X} where X = {"w": tensor, "state_dict": X} (a cycle).
  io/lightning.ckpt     what a Lightning training run saves (SD 1.4's .ckpt): the state_dict beside a
                        ModelCheckpoint class and instance as "callbacks" keys, a numpy int64
                        global_step, a numpy array and dtype, a set, a frozenset, an OrderedDict;
                        torch.save's default pickle (protocol 2, __builtin__ names, bytes through
                        _codecs.encode) with numpy 1.x's module names. Stand-in classes, same names.
  io/lightning-p4.ckpt  the same with pickle protocol 4 (STACK_GLOBAL, EMPTY_SET/ADDITEMS, FROZENSET).
  io/refused-*.ckpt     refused globals inside otherwise allowed structure: an os.system call in the
                        state of a ModelCheckpoint (would run under torch.load), builtins.getattr
                        as a dict value, subprocess.Popen as a "callbacks" key.
  io/refused-global-*.ckpt  {"x": GLOBAL(name)("arg")} for globals that must stay refused.
  io/st-*.safetensors   safetensors files breaking one rule of the format each (overlap, gap, trailing
                        bytes, non-string metadata, oversized header, header not starting with '{',
                        duplicate name, ...); st-valid-*.safetensors valid edge cases. Python's
                        safetensors verdict on each is recorded in expected.json ("safetensors-rules").

Same inputs, same values (the zips carry a random serialization id, so bytes may differ).
Usage: make_file_fixtures.py [--verify-exploits]   (the flag checks that torch.load(weights_only=False)
really runs each pwned-* payload, then removes the marker files it made)
Needs: torch and safetensors.
"""
import argparse
import collections
import hashlib
import io
import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import types
import zipfile
import zlib

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures"
IO = OUT / "io"

MARKER = "/tmp/sdtorch-pwned-{}"


# ---------------------------------------------------------------- randn

RANDN_CASES = [
    # (seed, [shapes drawn in order from one generator])
    (0, [[1], [5], [15], [16], [17], [2, 3, 4], []]),
    (42, [[3], [4, 4], [100]]),
    (2**32 + 5, [[7], [33], [1, 4, 64, 64]]),
    (2**63 - 1, [[6], [40]]),
    (2**63 + 7, [[6], [40]]),
    (2**64 - 1, [[9]]),
    (1234, [[1, 4, 64, 64]]),
    # consecutive draws mixing both code paths (< 16 and >= 16 elements), an empty draw, a big one
    (7, [[3], [20], [0], [1, 4, 64, 64], [5], [16], [2, 2], [31]]),
]
FULL_LIMIT = 128  # draws up to this many elements are stored whole


def sample_indices(n: int) -> list:
    idx = set(range(min(n, 100))) | set(range(max(0, n - 100), n))
    idx |= {(i * 7919) % n for i in range(100)}
    return sorted(idx)


def randn_reference() -> dict:
    cases = []
    for seed, shapes in RANDN_CASES:
        g = torch.Generator().manual_seed(seed)
        draws = []
        for shape in shapes:
            t = torch.randn(shape, generator=g)
            flat = t.reshape(-1)
            d = {"shape": shape}
            if flat.numel() <= FULL_LIMIT:
                d["values"] = flat.tolist()
            else:
                idx = sample_indices(flat.numel())
                d["indices"] = idx
                d["values"] = flat[idx].tolist()
                d["sum"] = float(flat.double().sum())
                d["sha256"] = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
            draws.append(d)
        cases.append({"seed": str(seed), "draws": draws})
    return {"about": "torch.randn(shape, generator=torch.Generator().manual_seed(seed)), draws in order",
            "torch": torch.__version__, "cases": cases}


# ---------------------------------------------------------------- tensor files

def special(dtype) -> torch.Tensor:
    return torch.tensor([0.0, -0.0, 1.0, -2.5, 1 / 3, float("inf"), float("-inf"), float("nan")], dtype=dtype)


def dtypes_file() -> dict:
    g = torch.Generator().manual_seed(5)
    f64 = torch.cat([special(torch.float64), torch.tensor([5e-324, 1e-310, 1.7976931348623157e308], dtype=torch.float64)])
    f32 = torch.cat([special(torch.float32), torch.randn(4, generator=g), torch.tensor([1e-45, 3.4028234663852886e38])])
    f16 = torch.cat([special(torch.float16), torch.tensor([65504.0, 2**-24, 2**-14, 0.1], dtype=torch.float16)])
    bf16 = torch.cat([special(torch.bfloat16), torch.tensor([3.3895313892515355e38, 2**-133, 0.1], dtype=torch.bfloat16)])
    return {
        "f64": f64.reshape(11, 1),
        "f32": f32.reshape(2, 7),
        "f16": f16.reshape(3, 4),
        "bf16": bf16,
        "i64": torch.tensor([[-(2**63), 2**63 - 1], [0, -1], [123456789012345, -5]], dtype=torch.int64),
        "i32": torch.tensor([-(2**31), 2**31 - 1, 0, -7], dtype=torch.int32).reshape(2, 2),
        "i16": torch.tensor([-32768, 32767, 1], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0, -1], dtype=torch.int8),
        "u8": torch.tensor([[0, 255, 128]], dtype=torch.uint8),
        "bool": torch.tensor([True, False, False, True, True]),
        "scalar_f32": torch.tensor(-1.25),
        "scalar_i64": torch.tensor(7, dtype=torch.int64),
        "empty_f32": torch.zeros(0),
        "empty_i64": torch.zeros(2, 0, 3, dtype=torch.int64),
        'odd/key.\u00fc "quoted" \\ back': torch.tensor([1.0, 2.0], dtype=torch.float16),
    }


DTYPES_METADATA = {"format": "pt", "note": 'unicode \u00fc\u4e2d "quoted" \\ and a\nnewline'}


def module_state_dict() -> collections.OrderedDict:
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Linear(4, 2))
    m(torch.randn(2, 2, 6, 6))  # a training step updates the BatchNorm running stats and counter
    sd = m.state_dict()  # an OrderedDict with _metadata, pickled with BUILD
    g = torch.Generator().manual_seed(11)
    sd["extra.half"] = torch.randn(2, 3, generator=g).half()
    sd["extra.bf16"] = torch.randn(5, generator=g).bfloat16()
    sd["extra.f64"] = torch.randn(3, generator=g).double()
    sd["extra.int32_scalar"] = torch.tensor(470000, dtype=torch.int32)
    sd["extra.param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["extra.bool"] = torch.tensor([True, False, True])
    sd["extra.i8"] = torch.tensor([-3, 4], dtype=torch.int8)
    sd["extra.i16"] = torch.tensor([-300, 400], dtype=torch.int16)
    sd["extra.u8"] = torch.tensor([200, 3], dtype=torch.uint8)
    sd["extra.i64_view"] = torch.arange(10)[3:7]
    return sd


def nested_ckpt() -> dict:
    sd = module_state_dict()
    g = torch.Generator().manual_seed(12)
    return {
        "epoch": 5,
        "global_step": 840000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": sd,
        "hyper_parameters": {"lr": 1e-4, "betas": (0.9, 0.999), "name": "sd", "flags": [1, None, True, False, -2**40]},
        "optimizer_states": [{"state": {0: {"step": 3, "exp_avg": torch.randn(3, generator=g)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}],
        "loops": collections.OrderedDict(fit={"count": 2}),
    }


def flat_ckpt() -> dict:
    g = torch.Generator().manual_seed(13)
    base = torch.arange(24, dtype=torch.float32)
    other = torch.randn(6, 5, generator=g)
    return {
        "base": base,
        "view_offset": base[5:17],  # same storage as base, offset 5
        "transposed": base.view(4, 6).t(),  # non-contiguous
        "strided": base.view(4, 6)[1:, ::2],  # offset and steps
        "expanded": torch.arange(3, dtype=torch.float32).expand(2, 3),  # stride 0
        "column": other[:, 2],  # a view whose storage nothing else saves whole
        "half": torch.randn(2, 3, generator=g).half().t(),
        "int32_scalar": torch.tensor(-17, dtype=torch.int32),
        "param": torch.nn.Parameter(torch.randn(3, generator=g)),
        "empty": torch.empty(0, 4),
        "bool": torch.tensor([[True], [False]]),
        "i64": torch.tensor([2**40, -3], dtype=torch.int64),
    }


def to_array_hex(t: torch.Tensor) -> str:
    """The bytes Tensor.toArray() gives: C order, float16/bfloat16 widened to float32, bool as bytes."""
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    t = t.contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes().hex() if t.numel() else ""


def describe(tensors: dict, metadata=None) -> dict:
    out = {"tensors": {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape), "hex": to_array_hex(v)}
                       for k, v in tensors.items()}}
    if metadata is not None:
        out["metadata"] = metadata
    return out


# ---------------------------------------------------------------- malicious checkpoints

class Call:
    """Pickles as a call of fn(*args) (what torch.load(weights_only=False) would run)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class NamedPickler(pickle._Pickler):
    """Writes globals under the names a reader sees in the source: no Python 2 renames (fix_imports),
    and os.system as "os system" (CPython's own pickler writes "posix system")."""

    def __init__(self, file, protocol=None):
        super().__init__(file, protocol, fix_imports=False)

    def save_global(self, obj, name=None):
        if obj is os.system:
            self.write(pickle.GLOBAL + b"os\nsystem\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def pickle_module(pickler_cls):
    return types.SimpleNamespace(Pickler=pickler_cls, __name__="pickle")


def write_pickle_zip(path: pathlib.Path, data_pkl: bytes):
    """A zip laid out exactly as torch.save lays it out, holding the given data.pkl and no storages."""
    w = torch._C.PyTorchFileWriter(str(path))
    w.write_record("data.pkl", data_pkl, len(data_pkl))
    w.write_record(".format_version", "1", 1)
    w.write_record("byteorder", "little", 6)
    w.write_end_of_file()
    del w


def str_arg(s: str) -> bytes:
    b = s.encode()
    return pickle.BINUNICODE + len(b).to_bytes(4, "little") + b


def exploits() -> dict:
    """name -> function writing the file. Each payload runs only when Python unpickles it."""
    weight = torch.arange(4, dtype=torch.float32)

    def os_system(path):
        obj = {"model.weight": weight, "model.hook": Call(os.system, "touch " + MARKER.format("os-system"))}
        torch.save(obj, str(path), pickle_module=pickle_module(NamedPickler), pickle_protocol=2)

    def builtins_exec(path):  # protocol 4: STACK_GLOBAL 'builtins' 'exec' inside FRAMEs
        code = f"open({MARKER.format('exec')!r}, 'w').close()"
        torch.save({"model.weight": weight, "x": Call(exec, code)}, str(path), pickle_protocol=4)

    def subprocess_call(path):
        obj = {"state_dict": {"w": weight, "x": Call(subprocess.check_call, ["touch", MARKER.format("subprocess")])}}
        torch.save(obj, str(path), pickle_module=pickle_module(NamedPickler), pickle_protocol=2)

    def inst(path):  # INST 'os system' with the command taken from the MARK
        data = (pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + str_arg("x") + pickle.MARK +
                str_arg("touch " + MARKER.format("inst")) + pickle.INST + b"os\nsystem\n" + pickle.SETITEM + pickle.STOP)
        write_pickle_zip(path, data)

    return {"os-system": os_system, "exec": builtins_exec, "subprocess": subprocess_call, "inst": inst}


def opcode_files() -> dict:
    od = pickle.GLOBAL + b"collections\nOrderedDict\n"
    return {
        "obj": pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + str_arg("x") + pickle.MARK + od + pickle.OBJ + pickle.SETITEM + pickle.STOP,
        "newobj": pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + str_arg("x") + od + pickle.EMPTY_TUPLE + pickle.NEWOBJ +
                  pickle.SETITEM + pickle.STOP,
    }


class StorageRef:
    """Stands for storage '0' (FloatStorage of `numel` elements) in a hand-made tensor record."""

    def __init__(self, numel):
        self.numel = numel


class RecordPickler(pickle._Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel)
        return None


def bad_records() -> dict:
    """name -> (storage numel claimed, storage offset, size, stride): tensor records pointing outside
    their storage. The storage record always holds 4 floats."""
    return {
        "beyond": (4, 0, (5,), (1,)),                # one element too many
        "offset-beyond": (4, 3, (2,), (1,)),         # the storage offset pushes it past the end
        "view-overflow": (4, 0, (2**62,), (4,)),     # (size-1)*stride wraps int64 to -4
        "view-overflow-2d": (4, 0, (2**32, 2**31), (2**32, 1)),
        "storage-overflow": (2**62, 0, (4,), (1,)),  # numel*4 bytes wraps to 0
    }


def write_bad_record(path: pathlib.Path, numel, offset, size, stride):
    rebuild = Call(torch._utils._rebuild_tensor_v2, StorageRef(numel), offset, size, stride, False, collections.OrderedDict())
    buf = io.BytesIO()
    RecordPickler(buf, protocol=2).dump({"w": rebuild})
    w = torch._C.PyTorchFileWriter(str(path))
    data = buf.getvalue()
    w.write_record("data.pkl", data, len(data))
    w.write_record("byteorder", "little", 6)
    floats = torch.arange(4, dtype=torch.float32).numpy().tobytes()
    w.write_record("data/0", floats, len(floats))
    w.write_end_of_file()
    del w


def stored_zip(files: dict, *, local64=None, cd_off64=None, rec64=None, zip64=False) -> bytes:
    """A zip of stored entries written by hand (data 64-byte aligned, as torch.save does), optionally in
    ZIP64 form; local64 / cd_off64 / rec64 replace the data.pkl local header offset, the central
    directory offset or the ZIP64 record offset with the given 64-bit values."""
    body, central = b"", b""
    for name, data in files.items():
        nb = name.encode()
        pad = -(len(body) + 30 + len(nb) + 4) % 64
        extra = struct.pack("<HH", 0x4646, pad) + b"Z" * pad
        local = len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data), len(nb),
                            len(extra)) + nb + extra + data
        cextra = b""
        if (zip64 or local64 is not None) and name.endswith("data.pkl"):
            cextra = struct.pack("<HHQ", 1, 8, local if local64 is None else local64)
            local = 0xFFFFFFFF
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                               len(nb), len(cextra), 0, 0, 0, 0, local) + nb + cextra
    n, cd_off, out = len(files), len(body), body + central
    if zip64 or cd_off64 is not None or rec64 is not None:
        rec = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_off if cd_off64 is None else cd_off64)
        out += struct.pack("<IIQI", 0x07064B50, 0, rec if rec64 is None else rec64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_off, 0)
    return out


def handmade_zips() -> dict:
    """name -> bytes: a small checkpoint re-zipped by hand, plain and ZIP64 (both valid), and ZIP64
    variants whose 64-bit offsets wrap around when added to a size (damaged, must not be read)."""
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, buf)
    with zipfile.ZipFile(buf) as z:
        files = {n.replace(n.split("/")[0], "archive", 1): z.read(n) for n in z.namelist()}
    return {
        "zip-plain": stored_zip(files),
        "zip64": stored_zip(files, zip64=True),
        "bad-zip64-local": stored_zip(files, local64=2**64 - 16),
        "bad-zip64-cd": stored_zip(files, cd_off64=2**64 - 8),
        "bad-zip64-record": stored_zip(files, rec64=2**64 - 8),
    }


def verify_exploits():
    for name in exploits():
        marker = pathlib.Path(MARKER.format(name))
        marker.unlink(missing_ok=True)
        try:
            torch.load(IO / f"pwned-{name}.ckpt", weights_only=False)
        except Exception as e:  # noqa: BLE001 (the payload ran before whatever failed afterwards)
            print(f"  ({name}: torch.load then raised {type(e).__name__})")
        assert marker.exists(), f"pwned-{name}.ckpt did not run its payload under torch.load"
        marker.unlink()
        print(f"pwned-{name}.ckpt: torch.load(weights_only=False) runs its payload")
    marker = pathlib.Path(MARKER.format("in-state"))
    marker.unlink(missing_ok=True)
    torch.load(IO / "refused-in-state.ckpt", weights_only=False)
    assert marker.exists(), "refused-in-state.ckpt did not run its payload under torch.load"
    marker.unlink()
    print("refused-in-state.ckpt: torch.load(weights_only=False) runs its payload")
    for name in opcode_files():
        with zipfile.ZipFile(IO / f"opcode-{name}.ckpt") as z:
            pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
            assert isinstance(pickle.loads(z.read(pkl))["x"], collections.OrderedDict)
        print(f"opcode-{name}.ckpt: a valid pickle")


# ---------------------------------------------------------------- nested state_dicts

def nested_twice_ckpt() -> dict:
    return {"state_dict": {"state_dict": module_state_dict()}}


def nested_cycle_ckpt() -> tuple:
    x = {"w": torch.arange(3, dtype=torch.float32)}
    x["state_dict"] = x
    return {"state_dict": x}, {"w": x["w"]}


# ---------------------------------------------------------------- objects besides tensors

def stand_in_class(module: str, name: str) -> type:
    """A class pickle writes as `module.name`, registered in sys.modules under that name."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    cls = type(name, (), {"__module__": module, "__qualname__": name})
    setattr(sys.modules[module], name, cls)
    return cls


ModelCheckpoint = stand_in_class("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")


class LegacyPickler(pickle._Pickler):
    """torch.save's default pickle (protocol 2, Python 2 names such as __builtin__) as numpy 1.x
    wrote it: numpy.core.multiarray, not numpy 2's numpy._core.multiarray. os.system is written as
    CPython writes it, posix.system."""

    RENAMES = [(np._core.multiarray.scalar, b"numpy.core.multiarray\nscalar\n"),
               (np._core.multiarray._reconstruct, b"numpy.core.multiarray\n_reconstruct\n")]

    def save_global(self, obj, name=None):
        for o, text in self.RENAMES:
            if obj is o:
                self.write(pickle.GLOBAL + text)
                self.memoize(obj)
                return
        super().save_global(obj, name)


def lightning_ckpt() -> dict:
    cb = ModelCheckpoint()
    cb.__dict__.update(monitor=None, save_top_k=-1, dirpath="logs/checkpoints", every_n_train_steps=None,
                       best_model_path="", kth_value=np.float64(np.inf), current_score=None)
    return {
        "epoch": 3,
        "global_step": np.int64(470000),
        "pytorch-lightning_version": "1.4.2",
        "state_dict": module_state_dict(),
        # Lightning 1.x keys callback states by the callback's class; an instance as key too.
        "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": None, "best_model_path": ""},
                      cb: {"dirpath": "logs/checkpoints", "last_model_path": "last.ckpt"}},
        "lr_history": np.array([[1e-4, 2e-4]], dtype=np.float32),
        "dtype": np.dtype("float16"),
        "seen": {1, 2, 3},
        "frozen": frozenset({"a"}),
        "hparams": collections.OrderedDict(lr=1e-4, betas=(0.9, 0.999)),
    }


def refused_in_state(path: pathlib.Path):
    cb = ModelCheckpoint()
    cb.__dict__.update(monitor=None, hook=Call(os.system, "touch " + MARKER.format("in-state")))
    obj = {"state_dict": {"w": torch.ones(2)}, "callbacks": {ModelCheckpoint: {"monitor": None}, cb: {}}}
    torch.save(obj, str(path), pickle_module=pickle_module(LegacyPickler))


def refused_dict_value(path: pathlib.Path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "x": getattr}, str(path), pickle_module=pickle_module(NamedPickler))


def refused_as_key(path: pathlib.Path):
    obj = {"state_dict": {"w": torch.ones(2)}, "callbacks": {subprocess.Popen: {"args": ["touch", "/tmp/x"]}}}
    torch.save(obj, str(path), pickle_module=pickle_module(NamedPickler))


# Globals that stay refused wherever they appear: calls that run code, get attributes or import, torch
# and numpy functions not on the list, and names that only look like allowed ones.
REFUSED_GLOBALS = [
    "posix.system", "nt.system", "builtins.eval", "builtins.__import__", "builtins.getattr", "subprocess.Popen",
    "torch.load", "torch.storage._load_from_bytes", "numpy.load", "copyreg._reconstructor", "_codecs.decode",
    "pytorch_lightning.callbacksX.y", "pytorch_lightning.utilities.cloud_io.load", "numpy.core.multiarray.scalarX",
]


def refused_global_pickle(name: str) -> bytes:
    module, attr = name.rsplit(".", 1)
    return (pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + str_arg("x") + pickle.GLOBAL + f"{module}\n{attr}\n".encode() +
            str_arg("arg") + pickle.TUPLE1 + pickle.REDUCE + pickle.SETITEM + pickle.STOP)


# ---------------------------------------------------------------- safetensors rules

def raw_safetensors(header, data: bytes, claimed=None) -> bytes:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(head) if claimed is None else claimed) + head + data


def f32(begin, end, n=2):
    return {"dtype": "F32", "shape": [n], "data_offsets": [begin, end]}


def safetensors_rules() -> dict:
    """name -> (bytes, the rule it breaks, whether Python's safetensors refuses it)."""
    d = struct.pack("<4f", 1, 2, 3, 4)
    one = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    return {
        "overlap": (raw_safetensors({"a": f32(0, 8), "b": f32(4, 12)}, d[:12]), "two tensors share bytes 4..8", True),
        "overlap-same": (raw_safetensors({"a": f32(0, 8), "b": f32(0, 8)}, d[:8]), "two names for the same bytes", True),
        "gap": (raw_safetensors({"a": f32(0, 8), "b": f32(12, 20)}, d + d[:4]), "bytes 8..12 belong to no tensor", True),
        "gap-start": (raw_safetensors({"a": f32(4, 12)}, d[:12]), "the first tensor does not start at 0", True),
        "trailing": (raw_safetensors({"a": f32(0, 8), "b": f32(8, 16)}, d + b"\0" * 8), "8 bytes after the last tensor", True),
        "metadata-number": (raw_safetensors({"__metadata__": {"step": 5}, "a": f32(0, 8)}, d[:8]), "a metadata value is a number", True),
        "metadata-object": (raw_safetensors({"__metadata__": {"x": {"y": "z"}}, "a": f32(0, 8)}, d[:8]), "a metadata value is an object", True),
        "metadata-not-object": (raw_safetensors({"__metadata__": "pt", "a": f32(0, 8)}, d[:8]), "__metadata__ is a string", True),
        "header-too-large": (raw_safetensors(b"{}", b"", claimed=100_000_001), "the header claims 100000001 bytes", True),
        "header-leading-space": (raw_safetensors(b" " + one, d[:8]), "the header starts with a space, not '{'", False),
        "header-nul-padding": (raw_safetensors(one + b"\0\0", d[:8]), "the header is padded with NULs, not spaces", True),
        "duplicate-name": (raw_safetensors(one[:-1] + b',"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', d),
                           "the name 'a' twice", True),
        "bad-utf8": (raw_safetensors(b'{"a\xff":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', d[:8]), "a name is not UTF-8", True),
        "float-offset": (raw_safetensors(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}', d[:8]), "an offset written 8.0", True),
    }


def valid_safetensors() -> dict:
    """Valid files in odd shapes: header order is not offset order, an empty tensor between two
    others, an extra field, a header padded with spaces, metadata."""
    d = struct.pack("<4f", 1, 2, 3, 4)
    head = {"__metadata__": {"k": "v"}, "b": f32(8, 16), "empty": {"dtype": "F16", "shape": [0, 3], "data_offsets": [8, 8]},
            "a": dict(f32(0, 8), extra=1)}
    return {"unordered": raw_safetensors(json.dumps(head).encode() + b"   ", d)}


def python_verdict(path: pathlib.Path):
    """None when Python's safetensors reads the whole file, else its message."""
    try:
        with safe_open(str(path), "pt") as f:
            for k in f.keys():
                f.get_tensor(k)
        return None
    except Exception as e:  # noqa: BLE001 (any refusal counts)
        return f"{type(e).__name__}: {e}"


def read_safetensors_py(path: pathlib.Path) -> tuple:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify-exploits", action="store_true")
    a = ap.parse_args()
    IO.mkdir(parents=True, exist_ok=True)

    (OUT / "randn-reference.json").write_text(json.dumps(randn_reference()) + "\n")

    expected = {}
    dt = dtypes_file()
    save_file(dt, str(IO / "dtypes.safetensors"), metadata=DTYPES_METADATA)
    expected["dtypes.safetensors"] = describe(dt, DTYPES_METADATA)
    nested = nested_ckpt()
    torch.save(nested, str(IO / "nested.ckpt"))
    expected["nested.ckpt"] = describe(nested["state_dict"])
    flat = flat_ckpt()
    torch.save(flat, str(IO / "flat.ckpt"))
    expected["flat.ckpt"] = describe(flat)

    twice = nested_twice_ckpt()
    torch.save(twice, str(IO / "nested-twice.ckpt"))
    expected["nested-twice.ckpt"] = describe(twice["state_dict"]["state_dict"])
    cycle, cycle_sd = nested_cycle_ckpt()
    torch.save(cycle, str(IO / "nested-cycle.ckpt"))
    expected["nested-cycle.ckpt"] = describe(cycle_sd)
    for name, protocol in [("lightning", 2), ("lightning-p4", 4)]:
        obj = lightning_ckpt()
        if protocol == 2:
            torch.save(obj, str(IO / f"{name}.ckpt"), pickle_module=pickle_module(LegacyPickler))
        else:
            torch.save(obj, str(IO / f"{name}.ckpt"), pickle_protocol=4)
        back = torch.load(IO / f"{name}.ckpt", weights_only=False)  # a valid pickle of what we meant
        assert back["global_step"] == 470000 and ModelCheckpoint in back["callbacks"], name
        expected[f"{name}.ckpt"] = describe(obj["state_dict"])

    rules = {}
    for name, (data, rule, refused) in safetensors_rules().items():
        path = IO / f"st-{name}.safetensors"
        path.write_bytes(data)
        verdict = python_verdict(path)
        assert (verdict is not None) == refused, f"{path.name}: Python's safetensors {'accepts' if verdict is None else 'refuses'} it"
        rules[path.name] = {"rule": rule, "python": "accepted" if verdict is None else f"refused: {verdict}"}
    for name, data in valid_safetensors().items():
        path = IO / f"st-valid-{name}.safetensors"
        path.write_bytes(data)
        tensors, metadata = read_safetensors_py(path)
        expected[path.name] = describe(tensors, metadata)
    expected["safetensors-rules"] = rules
    (IO / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")

    for name, write in exploits().items():
        write(IO / f"pwned-{name}.ckpt")
    refused_in_state(IO / "refused-in-state.ckpt")
    refused_dict_value(IO / "refused-dict-value.ckpt")
    refused_as_key(IO / "refused-as-key.ckpt")
    for name in REFUSED_GLOBALS:
        write_pickle_zip(IO / f"refused-global-{name}.ckpt", refused_global_pickle(name))
    for name, data in opcode_files().items():
        write_pickle_zip(IO / f"opcode-{name}.ckpt", data)

    for name, record in bad_records().items():
        write_bad_record(IO / f"bad-{name}.ckpt", *record)
    for name, data in handmade_zips().items():
        (IO / f"{name}.ckpt").write_bytes(data)
    torch.save({"w": torch.ones(2)}, str(IO / "legacy.pt"), _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(IO / "not-a-checkpoint.zip", "w") as z:
        z.writestr("hello.txt", "not a model\n")

    if a.verify_exploits:
        verify_exploits()
    total = sum(p.stat().st_size for p in [OUT / "randn-reference.json", *IO.iterdir()])
    print(f"wrote {OUT / 'randn-reference.json'} and {len(list(IO.iterdir()))} files in {IO} ({total} bytes)")


if __name__ == "__main__":
    main()
