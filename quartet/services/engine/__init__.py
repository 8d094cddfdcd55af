"""The engine service: model runtime, tokenizer and chat templates, scheduler, sampler.

Importing it before torch sets OpenMP's wait policy to PASSIVE unless the
environment chose one. Decode on CPU launches hundreds of tiny parallel
regions per token; with the default spin-waiting, every other busy process on
the machine (a test suite, a second service) makes the spinning threads miss
their time slices, and a 2-core box drops from ~20 to ~2 tokens/s. Passive
waiting costs a few microseconds per region on an idle machine instead.
"""

import os

if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
