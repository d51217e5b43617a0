"""Paper tooling: simulated datasets and trials, and the savings ceiling.

Kept out of ``smart_spark.engine`` so the operator's runtime never imports it;
``jobs/reproduce_paper.py`` and the guarantee tests use it.
"""
