"""The seed CNN's training throughput: fastnn against the NumPy reference step, PyTorch and
Keras. The same as ``python -m fastnn bench train`` (the code is fastnn.bench.train);
``--help`` lists the options."""
import sys

from fastnn.bench import train

if __name__ == "__main__":
    sys.exit(train.main())
