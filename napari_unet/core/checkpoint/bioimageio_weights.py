"""The extra weight formats of a bioimage.io package: TorchScript and ONNX.

Each is checked against the PyTorch network at a second input size and left out (with a log
line) when it does not reproduce it, so a package never lists weights that give other results.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import torch

from napari_unet.core.models.export import ProbabilityNet

logger = logging.getLogger(__name__)


def torchscript_weights(
    net: ProbabilityNet, example: torch.Tensor, other: torch.Tensor
) -> bytes | None:
    """Traced TorchScript bytes, or None when the trace does not match the net at ``other``.

    TorchScript is what bioimage.io consumers without this package (deepImageJ, ilastik) run;
    recent PyTorch marks it deprecated, so its warnings are silenced here.
    """
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks become constants
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            traced = torch.jit.trace(net, example, check_trace=False)
            ok = torch.allclose(traced(other), net(other), atol=1e-5)
        except Exception as err:  # tracing failures are reported, not fatal
            logger.warning("TorchScript weights left out: tracing failed (%s)", err)
            return None
        if not ok:
            logger.warning("TorchScript weights left out: the trace differs at another size")
            return None
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


#: ONNX operator set of the exported weights (onnxruntime >= 1.12 runs it).
ONNX_OPSET = 17


def onnx_weights(net: ProbabilityNet, example: torch.Tensor, other: torch.Tensor) -> bytes | None:
    """ONNX bytes of ``net`` with batch, Y and X dynamic, or None when the export fails.

    TorchScript is deprecated in PyTorch; ONNX is what bioimage.io consumers run without it. The
    TorchScript-based exporter (``dynamo=False``) needs nothing but torch (the torch.export one
    needs ``onnxscript``). With ``onnxruntime`` installed the file is run at a second size and
    dropped unless it reproduces the network there.
    """
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "y", 3: "x"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(
                net,
                (example,),
                buffer,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": dynamic, "output": dynamic},
            )
        except Exception as err:  # export failures are reported, not fatal
            logger.warning("ONNX weights left out: the export failed (%s)", err)
            return None
        expected = net(other).numpy()
    data = buffer.getvalue()
    try:
        import onnxruntime
    except ImportError:
        logger.info("ONNX weights not run here: onnxruntime is not installed")
        return data
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"input": other.numpy()})
    if result.shape != expected.shape or not np.allclose(result, expected, atol=1e-4):
        logger.warning("ONNX weights left out: onnxruntime differs from the net at another size")
        return None
    return data
