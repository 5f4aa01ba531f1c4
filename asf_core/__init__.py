"""ASF: Alternative Sparse Fields.

Reconstruct a whole image, as a continuous RGB field queryable at any coordinate, from a fraction
of its pixels, with conditional flow-matching models (Perceiver IO, Local Implicit, MAMBA).

    model = load_model("pretrained/perceiver_io_grid")
    image = to_float(load_image("app/samples/cifar_0000_cat.png", size=32))[None]  # (1, 3, 32, 32)
    out = reconstruct(model, image, make_mask(1, 32, 32, fraction=0.2), steps=20, samples=4)
    out.onestep, out.mean, out.samples  # x̂1 (the posterior mean), the mean of the 4 samples, each one
"""

from asf_core.checkpoint import load_model
from asf_core.data import load_image, to_float
from asf_core.fields import make_mask
from asf_core.models import MODELS, build_model
from asf_core.reconstruct import Reconstruction, reconstruct

__all__ = ["MODELS", "Reconstruction", "build_model", "load_image", "load_model", "make_mask", "reconstruct",
           "to_float"]
__version__ = "0.1.0"
