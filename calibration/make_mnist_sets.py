"""Write the calibration / evaluation .npz files for the bundled MNIST models.

Usage: python calibration/make_mnist_sets.py

Outputs (next to this script):
  resnet_mnist_calib.npz, vit_mnist_calib.npz : key ``input`` float32 (500,1,28,28)
  resnet_mnist_eval.npz,  vit_mnist_eval.npz  : keys ``input`` float32 (1000,1,28,28),
                                                ``labels`` int64 (1000,)
The split is defined in models/mnist_data.py (seed 0, shared by both models).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "models"))

from mnist_data import write_calibration_sets  # noqa: E402

if __name__ == "__main__":
    for p in write_calibration_sets(HERE):
        print("wrote", os.path.relpath(p, os.path.dirname(HERE)))
