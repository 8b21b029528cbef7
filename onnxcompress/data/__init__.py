"""Input data for calibration and evaluation."""

from onnxcompress.data.inputs import (
    BoundData,
    InputData,
    InputSpec,
    from_arrays,
    from_dir,
    from_iterable,
    from_npz,
    load_input_data,
    model_input_specs,
    random_data,
)
from onnxcompress.data.limits import DataLimits

__all__ = [
    "BoundData", "DataLimits", "InputData", "InputSpec", "from_arrays", "from_dir", "from_iterable", "from_npz",
    "load_input_data", "model_input_specs", "random_data",
]
