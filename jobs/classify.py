"""The classify job (``smart-spark-classify``), runnable from a checkout as well.

    python -m jobs.classify [flags]          # from the project folder
    spark-submit jobs/classify.py [flags]    # from anywhere, with or without the package installed

The code lives in :mod:`smart_spark.cli.classify` so the installed console
script ``smart-spark-classify`` runs it from any folder; see that module for
flags, config keys and exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, "") and str(ROOT) not in sys.path:  # spark-submit jobs/classify.py
    sys.path.insert(0, str(ROOT))

from smart_spark.cli.classify import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
