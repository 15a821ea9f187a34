"""The command line: `torch-otel run` (and the part of it that runs inside the program), `doctor` and `report`."""
