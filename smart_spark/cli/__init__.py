"""Command-line jobs shipped with the package (console script ``smart-spark-classify``)."""
