"""Start-up of ``medseg predict``: the modules it imports before the first case load no heavy
library it does not use (MONAI alone costs seconds; the issue asks for a first mask within 3 s).

Each check runs in a fresh interpreter, so what other tests imported does not count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: What the command line, prediction and the model registry import when loaded.
PREDICT_PATH = (
    "medseg.cli.main",
    "medseg.cli.commands.predict",
    "medseg.inference",
    "medseg.inference.batch",
    "medseg.inference.predictor",
    "medseg.models",
)

#: Libraries that must load only when a feature needs them (MONAI: a ``dynunet`` is built;
#: matplotlib: plots; highdicom/pydicom: DICOM I/O; SimpleITK: NRRD/MHA and some DICOM; scipy and
#: skimage: resampling, post-processing, evaluation; the ONNX engines: their backend is chosen).
HEAVY = (
    "monai",
    "matplotlib",
    "highdicom",
    "pydicom",
    "SimpleITK",
    "scipy",
    "skimage",
    "tensorboard",
    "onnx",
    "onnxruntime",
    "openvino",
)


def _fresh(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_predict_path_imports_no_heavy_library():
    code = (
        "import importlib, json, sys\n"
        f"for m in {PREDICT_PATH!r}: importlib.import_module(m)\n"
        "import medseg.cli.main\n"
        "medseg.cli.main.build_parser()  # every sub-command's options, as 'medseg predict' builds them\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    loaded = json.loads(_fresh(code))
    assert loaded == [], f"importing the predict path loads {loaded}: import them where they are used"


def test_dynunet_loads_monai_only_when_built():
    code = (
        "import json, sys\n"
        "import medseg.models\n"
        "from medseg.models.unet.dynunet import DynUNetParams\n"
        "params = DynUNetParams(features=(4, 8, 16))  # validating parameters needs no MONAI\n"
        "before = 'monai' in sys.modules\n"
        "net = medseg.models.build_model('dynunet', 3, 1, 2, features=[4, 8, 16])\n"
        "from monai.networks.nets import DynUNet as MonaiDynUNet\n"
        "from medseg.models.unet import DynUNet\n"
        "print(json.dumps([before, 'monai' in sys.modules, issubclass(DynUNet, MonaiDynUNet),\n"
        "                  isinstance(net.net, DynUNet)]))\n"
    )
    before, after, subclass, built = json.loads(_fresh(code))
    assert before is False, "importing medseg.models or DynUNetParams loaded MONAI"
    assert after and subclass
    assert built, "build_model('dynunet') did not build medseg's DynUNet"
