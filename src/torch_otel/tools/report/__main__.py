"""``python -m torch_otel.tools.report FILE...``: the same as ``torch-otel report FILE...``."""

import sys

from torch_otel.tools.report import main

sys.exit(main(sys.argv[1:]))
