"""ASF: Alternative Sparse Fields.

Reconstruct a whole image, as a continuous RGB field queryable at any coordinate, from a fraction
of its pixels, with conditional flow-matching models (Perceiver IO, Local Implicit, MAMBA).
"""

from asf_core.checkpoint import load_model
from asf_core.models import MODELS, build_model

__all__ = ["MODELS", "build_model", "load_model"]
__version__ = "0.1.0"
