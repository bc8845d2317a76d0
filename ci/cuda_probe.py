"""The CUDA probe of CI's GPU scripts (ci/gpu-session.sh, ci/test-gpu.sh): prints ``xpnet <path> CUDA usable`` or
``xpnet <path> CUDA NOT usable: <why>`` and exits 1 in the second case. The fake CuPy of tests/fake_cupy (NumPy
underneath; a PYTHONPATH left over from a dry run) is no GPU: a GPU job on it would pass having run nothing."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's xpnet, as `python -c` in its root
import xpnet  # noqa: E402

why = xpnet.backend.cuda_unavailable_reason()
if why is None:
    import cupy

    if Path(cupy.__file__).resolve().parent.parent.name == "fake_cupy":
        why = f"the cupy imported is the fake of tests/fake_cupy ({cupy.__file__}), NumPy underneath: no GPU"
print("xpnet", xpnet.__file__, "CUDA usable" if why is None else "CUDA NOT usable: " + why)
raise SystemExit(why is not None)
