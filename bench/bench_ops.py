"""Each op and direction alone at the seed CNN's shapes: fastnn.ops against fastnn.reference
and PyTorch. The same as ``python -m fastnn bench ops`` (the code is fastnn.bench.ops);
``--help`` lists the options."""
import sys

from fastnn.bench import ops

if __name__ == "__main__":
    sys.exit(ops.main())
